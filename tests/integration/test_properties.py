"""Hypothesis properties of the repositories and the API, under both drivers.

What the columns can hold is stored and reads back equal; anything else is
refused with ``InvalidValueError`` (a 422 over HTTP) and leaves nothing behind.

Each example starts clean: a session of its own, rolled back when the example
ends (``servicematrix.isolation``), and a fresh cache on a Redis database
flushed after it. The function-scoped fixtures taken here (the driver, its
engine and Redis client, and the app, into which each example plugs its own
session and cache) carry no state from one example to the next, which is why
``HealthCheck.function_scoped_fixture`` is suppressed.
"""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from servicematrix import isolation
from shop.columns import (
    DESCRIPTION_LENGTH,
    EMAIL_LENGTH,
    MAX_ID,
    MAX_MONEY,
    NAME_LENGTH,
    InvalidValueError,
)
from shop.models import Base, Order, User
from shop.repositories import (
    AsyncItemRepository,
    AsyncOrderRepository,
    AsyncUserRepository,
    DuplicateEmailError,
    ItemRepository,
    OrderRepository,
    UserRepository,
)

from .conftest import for_session
from .properties import (
    AMOUNTS,
    API_PROPERTIES,
    CLEAN_CHAR,
    EXACT_AMOUNTS,
    IDS,
    LONE_SURROGATE,
    NUL,
    PRICE_LITERALS,
    PROPERTIES,
    ExampleApi,
    Examples,
    api,
    exact_amount,
    examples,
    fresh_cache,
    storable,
    texts,
)
from .support import on_sync_session, resolve

__all__ = ["api", "examples"]  # fixtures


@asynccontextmanager
async def example_session(engine: Engine | AsyncEngine) -> AsyncIterator[Session | AsyncSession]:
    """A session of the engine's driver, rolled back when the example ends."""
    if isinstance(engine, AsyncEngine):
        async with isolation.async_rollback_session(engine) as session:
            yield session
    else:
        with isolation.rollback_session(engine) as session:
            yield session


async def rows(session: Session | AsyncSession, table: type[Base]) -> int:
    """How many rows ``table`` has, as this session sees it."""

    def count(sync_session: Session) -> int:
        return sync_session.scalar(select(func.count()).select_from(table)) or 0

    return await on_sync_session(session, count)


@PROPERTIES
@given(email=texts(EMAIL_LENGTH), name=texts(NAME_LENGTH))
@example(email=NUL, name="n").via("NUL")
@example(email="e", name="").via("empty")
@example(email="e", name=LONE_SURROGATE).via("lone surrogate")
@example(email="e" * (EMAIL_LENGTH + 1), name="n").via("too long")
async def test_user_is_stored_exactly_or_refused(
    db_engine: Engine | AsyncEngine, examples: Examples, email: str, name: str
) -> None:
    examples["run"] += 1
    async with example_session(db_engine) as session:
        users = for_session(session, UserRepository, AsyncUserRepository)
        before = await rows(session, User)
        if storable(email, EMAIL_LENGTH) and storable(name, NAME_LENGTH):
            user_id = (await resolve(users.create(email=email, name=name))).id
            session.expunge_all()  # read back from the server, not from the session
            found = await resolve(users.find_by_email(email))
            assert found is not None
            assert (found.id, found.email, found.name) == (user_id, email, name)
        else:
            examples["refused"] += 1
            with pytest.raises(InvalidValueError, match=r"^(email|name) "):
                await resolve(users.create(email=email, name=name))
            assert await rows(session, User) == before


@PROPERTIES
@given(
    email=st.text(CLEAN_CHAR, min_size=1, max_size=60),
    change=st.sampled_from([str.upper, str.lower, str.swapcase, str.title, str.casefold]),
)
@example(email="Alice@Example.com", change=str.lower)
@example(email="straße@example.de", change=str.upper)
async def test_emails_equal_up_to_case_are_one_user(
    db_engine: Engine | AsyncEngine,
    examples: Examples,
    email: str,
    change: Callable[[str], str],
) -> None:
    other = change(email)
    # Unicode caseless matching; for ASCII, every change of case is the same email.
    same = other.casefold() == email.casefold()
    assert same or not email.isascii()
    examples["run"] += 1
    async with example_session(db_engine) as session:
        users = for_session(session, UserRepository, AsyncUserRepository)
        before = await rows(session, User)
        first_id = (await resolve(users.create(email=email, name="first"))).id
        found = await resolve(users.find_by_email(other))
        assert (found is not None and found.id == first_id) is same
        if same:
            with pytest.raises(DuplicateEmailError, match="ignoring case"):
                await resolve(users.create(email=other, name="second"))
        user, created = await resolve(users.upsert(email=other, name="renamed"))
        assert (user.id == first_id, created) == (same, not same)
        assert user.email == (email if same else other)
        assert await rows(session, User) == before + (1 if same else 2)


@PROPERTIES
@given(price=AMOUNTS)
@example(price=Decimal("NaN")).via("NaN is storable in numeric")
@example(price=Decimal("-0.01"))
@example(price=Decimal("1.005")).via("rounded by numeric(10, 2)")
async def test_item_price_is_stored_exactly_or_refused(
    db_engine: Engine | AsyncEngine, examples: Examples, price: Decimal
) -> None:
    examples["run"] += 1
    async with example_session(db_engine) as session:
        items = for_session(session, ItemRepository, AsyncItemRepository)
        item_id = (await resolve(items.create(name="probe", description="", price=Decimal(1)))).id
        if exact_amount(price):
            created = await resolve(items.create(name="priced", description="", price=price))
            ids = [item_id, created.id]
            await resolve(items.update(item_id, price=price))
            expected = [price, price]
        else:
            examples["refused"] += 1
            ids = [item_id]
            with pytest.raises(InvalidValueError, match="price"):
                await resolve(items.create(name="priced", description="", price=price))
            with pytest.raises(InvalidValueError, match="price"):
                await resolve(items.update(item_id, price=price))
            expected = [Decimal(1)]
        session.expunge_all()
        stored = [await resolve(items.get(i)) for i in ids]
        assert [item.price if item else None for item in stored] == expected


@PROPERTIES
@given(total=AMOUNTS)
@example(total=Decimal("Infinity"))
async def test_order_total_is_stored_exactly_or_refused(
    db_engine: Engine | AsyncEngine, examples: Examples, total: Decimal
) -> None:
    examples["run"] += 1
    async with example_session(db_engine) as session:
        users = for_session(session, UserRepository, AsyncUserRepository)
        orders = for_session(session, OrderRepository, AsyncOrderRepository)
        owner = (await resolve(users.create(email="owner@example.com", name="owner"))).id
        if exact_amount(total):
            await resolve(orders.create(user_id=owner, total=total))
            expected = [total]
        else:
            examples["refused"] += 1
            with pytest.raises(InvalidValueError, match="total"):
                await resolve(orders.create(user_id=owner, total=total))
            expected = []
        session.expunge_all()
        assert [o.total for o in await resolve(orders.list_for_user(owner))] == expected


@PROPERTIES
@given(any_id=IDS)
@example(any_id=MAX_ID + 1).via("past int4")
async def test_ids_out_of_range_are_refused(
    db_engine: Engine | AsyncEngine, examples: Examples, any_id: int
) -> None:
    examples["run"] += 1
    async with example_session(db_engine) as session:
        users = for_session(session, UserRepository, AsyncUserRepository)
        items = for_session(session, ItemRepository, AsyncItemRepository)
        orders = for_session(session, OrderRepository, AsyncOrderRepository)
        before = await rows(session, Order)
        uses: list[Callable[[], Any]] = [
            lambda: users.get(any_id),
            lambda: items.get(any_id),
            lambda: items.update(any_id, name="renamed"),
            lambda: items.delete(any_id),
            lambda: orders.list_for_user(any_id),
        ]
        if 1 <= any_id <= MAX_ID:
            for use in uses:
                await resolve(use())
        else:
            examples["refused"] += 1
            uses.append(lambda: orders.create(user_id=any_id, total=Decimal(1)))
            for use in uses:
                with pytest.raises(InvalidValueError, match="id"):
                    await resolve(use())
        assert await rows(session, Order) == before  # and the session is still usable


@API_PROPERTIES
@given(name=texts(NAME_LENGTH), description=texts(), price=PRICE_LITERALS)
@example(name="n", description=NUL, price="1").via("NUL")
@example(name=LONE_SURROGATE, description="", price="1").via("a lone surrogate in the 422")
@example(name="n", description="", price="NaN").via("NaN in the 422")
async def test_api_stores_an_item_exactly_or_answers_422(
    api: ExampleApi,
    db_engine: Engine | AsyncEngine,
    redis_client: Any,
    examples: Examples,
    name: str,
    description: str,
    price: str,
) -> None:
    examples["run"] += 1
    # ensure_ascii: a lone surrogate travels as a \ud800 escape, as any JSON client may send it
    text = json.dumps({"name": name, "description": description})
    body = f'{text[:-1]}, "price": {price}}}'
    async with (
        example_session(db_engine) as session,
        fresh_cache(redis_client) as cache,
        api.client(session, cache) as client,
    ):
        before = (await client.get("/items/")).json()
        headers = {"content-type": "application/json"}
        created = await client.post("/items/", content=body, headers=headers)
        after = (await client.get("/items/")).json()
    added = [(i["name"], i["description"], Decimal(repr(i["price"]))) for i in after[len(before) :]]
    if all(
        [
            storable(name, NAME_LENGTH),
            storable(description, DESCRIPTION_LENGTH, 0),
            exact_amount(Decimal(price)),
        ]
    ):
        assert created.status_code == 200, created.text
        assert added == [(name, description, Decimal(price))]
    else:
        examples["refused"] += 1
        assert created.status_code == 422, created.text
        fields = {error["loc"][-1] for error in created.json()["detail"]}
        assert fields
        assert fields <= {"name", "description", "price"}
        assert after == before


@API_PROPERTIES
@given(totals=st.lists(EXACT_AMOUNTS, max_size=3))
@example(totals=[MAX_MONEY, MAX_MONEY]).via("a sum past numeric(10, 2) failed its response")
async def test_api_total_is_the_exact_sum_of_the_orders(
    api: ExampleApi,
    db_engine: Engine | AsyncEngine,
    redis_client: Any,
    examples: Examples,
    totals: list[Decimal],
) -> None:
    examples["run"] += 1
    user = {"email": "buyer@example.com", "name": "buyer"}
    async with (
        example_session(db_engine) as session,
        fresh_cache(redis_client) as cache,
        api.client(session, cache) as client,
    ):
        user_id = (await client.post("/api/users", json=user)).json()["id"]
        for total in totals:
            order = {"user_id": user_id, "total": float(total)}
            assert (await client.post("/api/orders", json=order)).status_code == 201
        answered = await client.get(f"/api/users/{user_id}/orders/total")
    assert answered.status_code == 200, answered.text
    assert Decimal(repr(answered.json()["total"])) == sum(totals, Decimal(0))
