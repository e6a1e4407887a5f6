"""Routes under /api/users."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from shop.api.deps import AppSettings, Cache, DbSession, Users
from shop.api.driver import call
from shop.api.facts import PROFILE, user_facts
from shop.repositories import DuplicateEmailError
from shop.schemas import Email, Id, UserCreate, UserOut, UserPut

router = APIRouter(prefix="/api/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, users: Users, session: DbSession) -> UserOut:
    """Register a user; 400 when the email is taken."""
    try:
        user = await call(users.create, email=data.email, name=data.name)
    except DuplicateEmailError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    created = UserOut.model_validate(user)
    await call(session.commit)
    return created


@router.put("/by-email/{email}", responses={201: {"model": UserOut}})
async def put_user(
    email: Annotated[Email, Path()],
    data: UserPut,
    *,
    users: Users,
    session: DbSession,
    cache: Cache,
    response: Response,
) -> UserOut:
    """Create the user with this email (201) or rename the existing one (200)."""
    user, created = await call(users.upsert, email=email, name=data.name)
    stored = UserOut.model_validate(user)
    await call(session.commit)
    await call(cache.forget_fact, user_facts(stored.id), PROFILE)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return stored


@router.get("/{user_id}")
async def read_user(user_id: Id, users: Users, cache: Cache, settings: AppSettings) -> UserOut:
    """Return one user, from the cache when it holds the profile, or 404."""
    cached = await call(cache.get_fact, user_facts(user_id), PROFILE)
    if cached is not None:
        return UserOut.model_validate(cached)
    user = await call(users.get, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with id {user_id}.")
    found = UserOut.model_validate(user)
    profile = found.model_dump(mode="json")
    await call(
        cache.set_fact, user_facts(user_id), PROFILE, profile, ttl=settings.profile_cache_ttl
    )
    return found
