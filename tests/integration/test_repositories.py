"""Repositories and services against real PostgreSQL, under both drivers."""

import asyncio
from decimal import Decimal
from uuid import uuid4

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from shop.config import Settings
from shop.db import migrate
from shop.models import Base, User
from shop.repositories import (
    AsyncItemRepository,
    AsyncOrderRepository,
    AsyncUserRepository,
    DuplicateEmailError,
    ItemRepository,
    OrderRepository,
    UserRepository,
)
from shop.services import AsyncOrderService, OrderService

from .conftest import for_session
from .factories import ItemCreateFactory, OrderCreateFactory, UserCreateFactory, unique_email
from .support import (
    assert_fresh_uuid7,
    in_background,
    on_sync_session,
    resolve,
    session_on,
    wait_until,
)

Users = UserRepository | AsyncUserRepository
Items = ItemRepository | AsyncItemRepository
Orders = OrderRepository | AsyncOrderRepository


async def test_created_user_has_database_id_and_is_found(users: Users) -> None:
    data = UserCreateFactory.build()

    user = await resolve(users.create(email=data.email, name=data.name))

    assert user.id > 0
    assert await resolve(users.get(user.id)) is user
    found = await resolve(users.find_by_email(data.email))
    assert found is not None
    assert (found.id, found.name) == (user.id, data.name)


async def test_duplicate_email_raises_and_session_stays_usable(users: Users) -> None:
    first, second = UserCreateFactory.batch(2)
    await resolve(users.create(email=first.email, name=first.name))

    with pytest.raises(DuplicateEmailError, match="email"):
        await resolve(users.create(email=first.email, name=second.name))

    other = await resolve(users.create(email=second.email, name=second.name))
    assert other.id > 0
    kept = await resolve(users.find_by_email(first.email))
    assert kept is not None
    assert kept.name == first.name


async def test_upsert_creates_then_renames(users: Users) -> None:
    data, renamed = UserCreateFactory.batch(2)

    user, created = await resolve(users.upsert(email=data.email, name=data.name))
    again, created_again = await resolve(users.upsert(email=data.email, name=renamed.name))

    assert (created, created_again) == (True, False)
    assert again is user
    assert (user.id, user.email, user.name) == (again.id, data.email, renamed.name)
    found = await resolve(users.find_by_email(data.email))
    assert found is user


async def test_upsert_renames_a_user_loaded_before(users: Users) -> None:
    data = UserCreateFactory.build()
    loaded = await resolve(users.create(email=data.email, name=data.name))

    user, created = await resolve(users.upsert(email=data.email, name="Renamed"))

    assert (user, created, loaded.name) == (loaded, False, "Renamed")


async def waiting_for_lock(session: Session | AsyncSession, pid: int) -> bool:
    """Whether backend ``pid`` waits for a lock, as pg_stat_activity says right now."""
    # The activity view is a snapshot per transaction; clear it to see the present.
    await resolve(session.execute(text("SELECT pg_stat_clear_snapshot()")))
    query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
    result = await resolve(session.execute(query, {"pid": pid}))
    return bool(result.scalar_one() == "Lock")


@pytest.mark.committed
async def test_upsert_waiting_on_an_uncommitted_insert_updates_it(
    db_engine: Engine | AsyncEngine, db_session: Session | AsyncSession, users: Users
) -> None:
    email = unique_email()
    first, created = await resolve(users.upsert(email=email, name="first"))
    first_id = first.id
    rival_session = session_on(db_engine)
    try:
        rival = for_session(rival_session, UserRepository, AsyncUserRepository)
        pid = (await resolve(rival_session.execute(text("SELECT pg_backend_pid()")))).scalar_one()
        racing = in_background(rival.upsert, email=email, name="second")
        # The rival waits on the unique index for this transaction's row...
        await wait_until(lambda: waiting_for_lock(db_session, pid))
        await resolve(db_session.commit())
        # ...and, once it is committed, updates it: ON CONFLICT does, MERGE on its retry.
        second, created_again = await racing
        stored = (second.id, second.name)
        await resolve(rival_session.commit())
    finally:
        await resolve(rival_session.close())

    assert (created, created_again) == (True, False)
    assert stored == (first_id, "second")


async def test_unknown_user_is_none(users: Users) -> None:
    assert await resolve(users.get(2_000_000_000)) is None
    assert await resolve(users.find_by_email(UserCreateFactory.build().email)) is None


async def test_item_lifecycle(items: Items) -> None:
    data, change = ItemCreateFactory.batch(2)
    item = await resolve(items.create(**data.model_dump()))
    assert (item.name, item.description, item.price) == (data.name, data.description, data.price)
    assert item in await resolve(items.list())

    updated = await resolve(items.update(item.id, price=change.price))

    assert updated is not None
    assert (updated.name, updated.price) == (data.name, change.price)
    fetched = await resolve(items.get(item.id))
    assert fetched is not None
    assert fetched.price == change.price
    assert await resolve(items.delete(item.id)) is True
    assert await resolve(items.get(item.id)) is None


async def test_update_without_changes_returns_item(items: Items) -> None:
    item = await resolve(items.create(**ItemCreateFactory.build().model_dump()))

    assert await resolve(items.update(item.id)) is item


async def test_unknown_item_is_none_and_not_deleted(items: Items) -> None:
    assert await resolve(items.get(2_000_000_000)) is None
    assert await resolve(items.update(2_000_000_000, name="ghost")) is None
    assert await resolve(items.delete(2_000_000_000)) is False


async def test_list_returns_items_in_creation_order(items: Items) -> None:
    created = [
        await resolve(items.create(**data.model_dump())) for data in ItemCreateFactory.batch(3)
    ]

    listed = await resolve(items.list())

    assert [i.id for i in listed if i in created] == [i.id for i in created]


async def test_orders_and_user_total(
    users: Users, orders: Orders, order_service: OrderService | AsyncOrderService
) -> None:
    buyer, idle = UserCreateFactory.batch(2)
    user = await resolve(users.create(email=buyer.email, name=buyer.name))
    other = await resolve(users.create(email=idle.email, name=idle.name))
    totals = [OrderCreateFactory.build(user_id=user.id).total for _ in range(3)]
    for total in totals:
        await resolve(orders.create(user_id=user.id, total=total))

    placed = await resolve(orders.list_for_user(user.id))

    assert [o.total for o in placed] == totals
    assert {o.status for o in placed} == {"pending"}
    for order in placed:
        assert_fresh_uuid7(order.reference)
        assert await resolve(orders.get_by_reference(order.reference)) is order
    assert len({o.reference for o in placed}) == 3
    assert await resolve(order_service.get_user_total(user.id)) == sum(totals)
    nothing = await resolve(order_service.get_user_total(other.id))
    assert (type(nothing), nothing) == (Decimal, Decimal(0))
    assert await resolve(orders.list_for_user(other.id)) == []


async def test_unknown_order_reference_is_none(orders: Orders) -> None:
    assert await resolve(orders.get_by_reference(uuid4())) is None


async def test_migrations_match_models(db_session: Session | AsyncSession) -> None:
    def differences(session: Session) -> list[object]:
        connection: Connection = session.connection()
        context = MigrationContext.configure(connection, opts={"compare_server_default": True})
        return list(compare_metadata(context, Base.metadata))

    assert await on_sync_session(db_session, differences) == []


def test_migrate_is_idempotent_with_either_driver_url(
    settings: Settings, sync_engine: Engine
) -> None:
    def state() -> tuple[list[str], list[str]]:
        with sync_engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            return list(versions.scalars()), sorted(inspect(connection).get_table_names())

    before = state()
    # The worker's database is at head already: migrating again changes nothing.
    migrate(settings.database_url)
    assert state() == before
    assert len(before[0]) == 1
    assert {"users", "items", "orders"} <= set(before[1])


@pytest.mark.committed
async def test_concurrent_creates_get_distinct_ids(
    async_engine: AsyncEngine, async_db_session: AsyncSession
) -> None:
    async def create_in_own_session(email: str, name: str) -> int:
        async with AsyncSession(async_engine) as session:
            user = await AsyncUserRepository(session).create(email=email, name=name)
            user_id = user.id
            await session.commit()
            return user_id

    payloads = UserCreateFactory.batch(10)

    ids = await asyncio.gather(*(create_in_own_session(p.email, p.name) for p in payloads))

    assert len(set(ids)) == 10
    stored = await async_db_session.scalar(
        select(func.count()).select_from(User).where(User.id.in_(ids))
    )
    assert stored == 10
