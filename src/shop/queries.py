"""Every statement the service runs, built once for both drivers.

The repositories only execute what these functions return, so the sync and
async executors cannot drift apart.
"""

from decimal import Decimal

from sqlalchemy import Select, TextClause, delete, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert
from sqlalchemy.sql.selectable import TypedReturnsRows

from shop.models import Item, Order, User


def insert_user(email: str, name: str) -> ReturningInsert[User]:
    """INSERT a user and return the new row as a ``User``."""
    return insert(User).values(email=email, name=name).returning(User)


def user_by_id(user_id: int) -> Select[User]:
    """SELECT one user by id."""
    return select(User).where(User.id == user_id)


def user_by_email(email: str) -> Select[User]:
    """SELECT one user by email."""
    return select(User).where(User.email == email)


def insert_item(name: str, description: str, price: Decimal) -> ReturningInsert[Item]:
    """INSERT an item and return it."""
    return insert(Item).values(name=name, description=description, price=price).returning(Item)


def item_by_id(item_id: int) -> Select[Item]:
    """SELECT one item by id."""
    return select(Item).where(Item.id == item_id)


def all_items() -> Select[Item]:
    """SELECT every item, oldest first."""
    return select(Item).order_by(Item.id)


def update_item(
    item_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    price: Decimal | None = None,
) -> TypedReturnsRows[Item]:
    """UPDATE the fields that are not None and return the item (just SELECT it if none)."""
    changes = {"name": name, "description": description, "price": price}
    values = {field: value for field, value in changes.items() if value is not None}
    if not values:
        return item_by_id(item_id)
    return update(Item).where(Item.id == item_id).values(**values).returning(Item)


def delete_item(item_id: int) -> ReturningDelete[int]:
    """DELETE one item, returning its id when it existed."""
    return delete(Item).where(Item.id == item_id).returning(Item.id)


def insert_order(user_id: int, total: Decimal) -> ReturningInsert[Order]:
    """INSERT an order and return it."""
    return insert(Order).values(user_id=user_id, total=total).returning(Order)


def orders_of_user(user_id: int) -> Select[Order]:
    """SELECT a user's orders, oldest first."""
    return select(Order).where(Order.user_id == user_id).order_by(Order.id)


def user_total(user_id: int) -> Select[Decimal]:
    """SELECT the sum of a user's order totals, 0 when there are none."""
    return select(func.coalesce(func.sum(Order.total), Decimal(0))).where(Order.user_id == user_id)


def server_version() -> TextClause:
    """Ask PostgreSQL for its version string."""
    return sql_text("SHOW server_version")
