"""Every statement the service runs, built once for both drivers.

The repositories only execute what these functions return, so the sync and
async executors cannot drift apart.
"""

from decimal import Decimal
from typing import cast
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Select,
    TextClause,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert
from sqlalchemy.sql.selectable import TypedReturnsRows

from shop.ids import uuid7
from shop.models import Item, Order, User

# Rows of an upsert: the user as stored now, and whether this statement created it.
UserUpsert = TypedReturnsRows[User, bool]
MERGE_USER = """
MERGE INTO users
USING (VALUES (:email, :name)) AS given (email, name) ON users.email = given.email
WHEN MATCHED THEN UPDATE SET name = given.name
WHEN NOT MATCHED THEN INSERT (email, name) VALUES (given.email, given.name)
RETURNING users.id, users.email, users.name, merge_action() = 'INSERT' AS created
"""


def insert_user(email: str, name: str) -> ReturningInsert[User]:
    """INSERT a user and return the new row as a ``User``."""
    return insert(User).values(email=email, name=name).returning(User)


def merge_user(email: str, name: str) -> UserUpsert:
    """MERGE ... RETURNING (PostgreSQL 17+): create the user, or rename the one with this email."""
    created = column("created", Boolean)
    merge = (
        sql_text(MERGE_USER)
        .bindparams(email=email, name=name)
        .columns(User.id, User.email, User.name, created)
    )
    # populate_existing: a User already in the session takes the new name.
    upsert = select(User, created).from_statement(merge)
    return cast(UserUpsert, upsert.execution_options(populate_existing=True))


def insert_user_on_conflict(email: str, name: str) -> UserUpsert:
    """INSERT ... ON CONFLICT DO UPDATE: the same upsert where MERGE cannot return rows."""
    # A row this statement inserted has xmax 0; one it updated keeps the lock the update
    # took on the conflicting row, so its xmax names this transaction.
    created = literal_column("xmax = 0", Boolean).label("created")
    insert_row = pg_insert(User).values(email=email, name=name)
    upsert = insert_row.on_conflict_do_update(
        index_elements=[User.email], set_={"name": insert_row.excluded.name}
    )
    orm_upsert = select(User, created).from_statement(upsert.returning(User, created))
    return cast(UserUpsert, orm_upsert.execution_options(populate_existing=True))


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
    """INSERT an order with a UUIDv7 reference made here, and return it."""
    return insert(Order).values(user_id=user_id, total=total, reference=uuid7()).returning(Order)


def insert_order_referenced_by_server(user_id: int, total: Decimal) -> ReturningInsert[Order]:
    """INSERT an order whose reference PostgreSQL 18's uuidv7() makes, and return it."""
    statement = insert(Order).values(user_id=user_id, total=total, reference=func.uuidv7())
    return statement.returning(Order)


def order_by_reference(reference: UUID) -> Select[Order]:
    """SELECT one order by its public reference."""
    return select(Order).where(Order.reference == reference)


def orders_of_user(user_id: int) -> Select[Order]:
    """SELECT a user's orders, oldest first."""
    return select(Order).where(Order.user_id == user_id).order_by(Order.id)


def user_total(user_id: int) -> Select[Decimal]:
    """SELECT the sum of a user's order totals, 0 when there are none."""
    return select(func.coalesce(func.sum(Order.total), Decimal(0))).where(Order.user_id == user_id)


def server_facts() -> TextClause:
    """Ask PostgreSQL what it is: its version string and its ``server_version_num``."""
    return sql_text(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
    )


def ping() -> TextClause:
    """The cheapest statement that proves the server answers."""
    return sql_text("SELECT 1")
