"""Every statement the service runs, built once for both drivers.

The repositories only execute what these functions return, so the sync and
async executors cannot drift apart. Each builder checks its arguments first
(``shop.columns``): a value the columns cannot hold raises ``InvalidValueError``
before any statement reaches the server, so a refused call leaves the session
and the tables as they were.
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

from shop.columns import (
    DESCRIPTION_LENGTH,
    EMAIL_LENGTH,
    NAME_LENGTH,
    check_id,
    check_money,
    check_text,
    email_key,
)
from shop.ids import uuid7
from shop.models import Item, Order, User

# Rows of an upsert: the user as stored now, and whether this statement created it.
UserUpsert = TypedReturnsRows[User, bool]
MERGE_USER = """
MERGE INTO users
USING (VALUES (:email, :email_key, :name)) AS given (email, email_key, name)
ON users.email_key = given.email_key
WHEN MATCHED THEN UPDATE SET name = given.name
WHEN NOT MATCHED THEN INSERT (email, email_key, name)
VALUES (given.email, given.email_key, given.name)
RETURNING users.id, users.email, users.email_key, users.name, merge_action() = 'INSERT' AS created
"""


def user_values(email: str, name: str) -> dict[str, str]:
    """The columns of a user with this email and name, checked."""
    check_text("email", email, EMAIL_LENGTH)
    check_text("name", name, NAME_LENGTH)
    return {"email": email, "email_key": email_key(email), "name": name}


def insert_user(email: str, name: str) -> ReturningInsert[User]:
    """INSERT a user and return the new row as a ``User``."""
    return insert(User).values(**user_values(email, name)).returning(User)


def merge_user(email: str, name: str) -> UserUpsert:
    """MERGE ... RETURNING (PostgreSQL 17+): create the user, or rename the one with this email."""
    created = column("created", Boolean)
    merge = (
        sql_text(MERGE_USER)
        .bindparams(**user_values(email, name))
        .columns(User.id, User.email, User.email_key, User.name, created)
    )
    # populate_existing: a User already in the session takes the new name.
    upsert = select(User, created).from_statement(merge)
    return cast(UserUpsert, upsert.execution_options(populate_existing=True))


def insert_user_on_conflict(email: str, name: str) -> UserUpsert:
    """INSERT ... ON CONFLICT DO UPDATE: the same upsert where MERGE cannot return rows."""
    # A row this statement inserted has xmax 0; one it updated keeps the lock the update
    # took on the conflicting row, so its xmax names this transaction.
    created = literal_column("xmax = 0", Boolean).label("created")
    insert_row = pg_insert(User).values(**user_values(email, name))
    upsert = insert_row.on_conflict_do_update(
        index_elements=[User.email_key], set_={"name": insert_row.excluded.name}
    )
    orm_upsert = select(User, created).from_statement(upsert.returning(User, created))
    return cast(UserUpsert, orm_upsert.execution_options(populate_existing=True))


def user_by_id(user_id: int) -> Select[User]:
    """SELECT one user by id."""
    return select(User).where(User.id == check_id("user id", user_id))


def user_by_email(email: str) -> Select[User]:
    """SELECT the user with this email, compared ignoring case."""
    key = email_key(check_text("email", email, EMAIL_LENGTH))
    return select(User).where(User.email_key == key)


def item_values(
    name: str | None, description: str | None, price: Decimal | None
) -> dict[str, str | Decimal]:
    """The item columns given (not None), checked."""
    checked: dict[str, str | Decimal] = {}
    if name is not None:
        checked["name"] = check_text("name", name, NAME_LENGTH)
    if description is not None:
        checked["description"] = check_text("description", description, DESCRIPTION_LENGTH, 0)
    if price is not None:
        checked["price"] = check_money("price", price)
    return checked


def insert_item(name: str, description: str, price: Decimal) -> ReturningInsert[Item]:
    """INSERT an item and return it."""
    return insert(Item).values(**item_values(name, description, price)).returning(Item)


def item_by_id(item_id: int) -> Select[Item]:
    """SELECT one item by id."""
    return select(Item).where(Item.id == check_id("item id", item_id))


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
    values = item_values(name, description, price)
    if not values:
        return item_by_id(item_id)
    statement = update(Item).where(Item.id == check_id("item id", item_id)).values(**values)
    return statement.returning(Item)


def delete_item(item_id: int) -> ReturningDelete[int]:
    """DELETE one item, returning its id when it existed."""
    return delete(Item).where(Item.id == check_id("item id", item_id)).returning(Item.id)


def order_values(user_id: int, total: Decimal) -> dict[str, int | Decimal]:
    """The columns of an order for this user and total, checked."""
    return {"user_id": check_id("user id", user_id), "total": check_money("total", total)}


def insert_order(user_id: int, total: Decimal) -> ReturningInsert[Order]:
    """INSERT an order with a UUIDv7 reference made here, and return it."""
    statement = insert(Order).values(**order_values(user_id, total), reference=uuid7())
    return statement.returning(Order)


def insert_order_referenced_by_server(user_id: int, total: Decimal) -> ReturningInsert[Order]:
    """INSERT an order whose reference PostgreSQL 18's uuidv7() makes, and return it."""
    statement = insert(Order).values(**order_values(user_id, total), reference=func.uuidv7())
    return statement.returning(Order)


def order_by_reference(reference: UUID) -> Select[Order]:
    """SELECT one order by its public reference."""
    return select(Order).where(Order.reference == reference)


def orders_of_user(user_id: int) -> Select[Order]:
    """SELECT a user's orders, oldest first."""
    return select(Order).where(Order.user_id == check_id("user id", user_id)).order_by(Order.id)


def user_total(user_id: int) -> Select[Decimal]:
    """SELECT the sum of a user's order totals, 0 when there are none."""
    total = func.coalesce(func.sum(Order.total), Decimal(0))
    return select(total).where(Order.user_id == check_id("user id", user_id))


def server_facts() -> TextClause:
    """Ask PostgreSQL what it is: its version string and its ``server_version_num``."""
    return sql_text(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
    )


def ping() -> TextClause:
    """The cheapest statement that proves the server answers."""
    return sql_text("SELECT 1")
