"""Routes for orders: placing one, finding one by reference, and a user's total."""

from decimal import Decimal
from uuid import UUID

from fastapi import APIRouter, HTTPException, status

from shop.api.deps import AppSettings, Cache, DbSession, Orders, OrderTotals, Users
from shop.api.driver import call
from shop.api.facts import ORDERS_TOTAL, user_facts
from shop.schemas import Id, OrderCreate, OrderOut, UserTotal

router = APIRouter(prefix="/api", tags=["orders"])


async def require_user(users: Users, user_id: int) -> None:
    """Raise 404 unless the user exists."""
    if await call(users.get, user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with id {user_id}.")


async def place_order(
    orders: Orders, session: DbSession, cache: Cache, user_id: int, total: Decimal
) -> OrderOut:
    """Insert and commit the order, then drop the user's cached total; in that order."""
    order = await call(orders.create, user_id=user_id, total=total)
    placed = OrderOut.model_validate(order)
    await call(session.commit)
    await call(cache.forget_fact, user_facts(user_id), ORDERS_TOTAL)
    return placed


@router.post("/orders", status_code=status.HTTP_201_CREATED)
async def create_order(
    data: OrderCreate, orders: Orders, users: Users, session: DbSession, cache: Cache
) -> OrderOut:
    """Place an order for an existing user; 404 for an unknown user."""
    await require_user(users, data.user_id)
    return await place_order(orders, session, cache, data.user_id, data.total)


@router.get("/orders/{reference}")
async def read_order(reference: UUID, orders: Orders) -> OrderOut:
    """Return the order with this public reference, or 404."""
    order = await call(orders.get_by_reference, reference)
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No order with reference {reference}.")
    return OrderOut.model_validate(order)


@router.get("/users/{user_id}/orders/total")
async def user_total(
    user_id: Id, totals: OrderTotals, users: Users, cache: Cache, settings: AppSettings
) -> UserTotal:
    """Sum of the user's orders (0 without any), cached per user; 404 for an unknown user."""
    cached = await call(cache.get_fact, user_facts(user_id), ORDERS_TOTAL)
    if cached is not None:
        return UserTotal(user_id=user_id, total=cached)
    await require_user(users, user_id)
    total = await call(totals.get_user_total, user_id)
    ttl = settings.orders_total_cache_ttl
    # A string keeps the Decimal exact; JSON numbers would go through float.
    await call(cache.set_fact, user_facts(user_id), ORDERS_TOTAL, str(total), ttl=ttl)
    return UserTotal(user_id=user_id, total=total)
