"""A user's cart, kept in Redis: read with a sliding TTL, checked out exactly once.

The cart lives only in Redis, so without Redis there is no cart: putting one is
a 503, and reading or checking out finds none.
"""

from decimal import Decimal

from fastapi import APIRouter, HTTPException, status

from shop.api.deps import AppSettings, Cache, DbSession, Items, Orders, Users
from shop.api.driver import call
from shop.api.orders import place_order, require_user
from shop.schemas import Cart, CartIn, CartLine, Id, OrderOut

router = APIRouter(prefix="/api/users/{user_id}/cart", tags=["cart"])

# The largest total an order can hold: Numeric(10, 2).
MAX_TOTAL = Decimal("99999999.99")


def cart_key(user_id: int) -> str:
    """The Redis key of a user's cart."""
    return f"cart:{user_id}"


def no_cart(user_id: int) -> HTTPException:
    """The 404 for a user without a cart."""
    return HTTPException(status.HTTP_404_NOT_FOUND, f"User {user_id} has no cart.")


@router.put("")
async def put_cart(
    user_id: Id, data: CartIn, *, users: Users, items: Items, cache: Cache, settings: AppSettings
) -> Cart:
    """Replace the cart, pricing each line now; 404 for an unknown user or item."""
    await require_user(users, user_id)
    lines = []
    for line in data.lines:
        item = await call(items.get, line.item_id)
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No item with id {line.item_id}.")
        lines.append(CartLine(item_id=item.id, quantity=line.quantity, price=item.price))
    total = sum((line.price * line.quantity for line in lines), Decimal(0))
    if total > MAX_TOTAL:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"The cart totals {total}, more than an order can hold ({MAX_TOTAL}).",
        )
    cart = Cart(user_id=user_id, lines=lines, total=total)
    if not await call(
        cache.set, cart_key(user_id), cart.model_dump(mode="json"), settings.cart_ttl
    ):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "The cart store is unavailable; try again soon."
        )
    return cart


@router.get("")
async def read_cart(user_id: Id, cache: Cache, settings: AppSettings) -> Cart:
    """Return the cart and keep it another ``cart_ttl`` seconds; 404 without one."""
    cached = await call(cache.refresh, cart_key(user_id), settings.cart_ttl)
    if cached is None:
        raise no_cart(user_id)
    return Cart.model_validate(cached)


@router.post("/checkout", status_code=status.HTTP_201_CREATED)
async def checkout(user_id: Id, orders: Orders, session: DbSession, cache: Cache) -> OrderOut:
    """Order what the cart holds, at its prices; the cart is taken, so a second try is 404."""
    # Taken before the order is written: two checkouts at once cannot both order it.
    cached = await call(cache.take, cart_key(user_id))
    if cached is None:
        raise no_cart(user_id)
    return await place_order(orders, session, cache, user_id, Cart.model_validate(cached).total)
