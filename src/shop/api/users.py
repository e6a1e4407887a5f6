"""Routes under /api/users."""

from fastapi import APIRouter, HTTPException, status

from shop.api.deps import DbSession, Users
from shop.api.driver import call
from shop.repositories import DuplicateEmailError
from shop.schemas import UserCreate, UserOut

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


@router.get("/{user_id}")
async def read_user(user_id: int, users: Users) -> UserOut:
    """Return one user, or 404."""
    user = await call(users.get, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with id {user_id}.")
    return UserOut.model_validate(user)
