"""Routes for orders: placing one, and a user's total."""

from fastapi import APIRouter, HTTPException, status

from shop.api.deps import DbSession, Orders, OrderTotals, Users
from shop.api.driver import call
from shop.schemas import OrderCreate, OrderOut, UserTotal

router = APIRouter(prefix="/api", tags=["orders"])


async def require_user(users: Users, user_id: int) -> None:
    """Raise 404 unless the user exists."""
    if await call(users.get, user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with id {user_id}.")


@router.post("/orders", status_code=status.HTTP_201_CREATED)
async def create_order(
    data: OrderCreate, orders: Orders, users: Users, session: DbSession
) -> OrderOut:
    """Place an order for an existing user; 404 for an unknown user."""
    await require_user(users, data.user_id)
    order = await call(orders.create, user_id=data.user_id, total=data.total)
    created = OrderOut.model_validate(order)
    await call(session.commit)
    return created


@router.get("/users/{user_id}/orders/total")
async def user_total(user_id: int, totals: OrderTotals, users: Users) -> UserTotal:
    """Sum of the user's orders (0 without any); 404 for an unknown user."""
    await require_user(users, user_id)
    return UserTotal(user_id=user_id, total=await call(totals.get_user_total, user_id))
