"""The five ways of isolating a test, and the one test body they all run, in both drivers.

Used by ``bench/isolation.py``; each way is a context manager around the body, timed
from its setup to its teardown, FLUSHDB included.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Generic, TypeVar

import redis
import redis.asyncio
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from servicematrix import isolation
from servicematrix.info import ServerInfo
from shop.cache import AsyncCacheService, CacheService
from shop.models import Base
from shop.repositories import (
    AsyncItemRepository,
    AsyncOrderRepository,
    AsyncUserRepository,
    ItemRepository,
    OrderRepository,
    UserRepository,
)

BASELINE = "work alone"
OURS = "savepoint rollback"
STRATEGIES = (OURS, "TRUNCATE", "DELETE", "drop_all/create_all", "template database")
SLOW = ("drop_all/create_all", "template database")
SCHEMES = {"sync": "postgresql+psycopg", "async": "postgresql+asyncpg"}
DRIVERS = ("sync", "async")
# Unique data for every test body and every cloned database, whatever the strategy.
SERIAL = itertools.count(1)

E = TypeVar("E", Engine, AsyncEngine)
R = TypeVar("R", redis.Redis, redis.asyncio.Redis)


@dataclass
class Lane(Generic[E, R]):
    """Where one strategy runs: its database, an engine, and its own Redis database."""

    pg: ServerInfo
    # On pg's database; for the template strategy, an AUTOCOMMIT engine on the server's own.
    engine: E
    redis: R
    flush: bool = True


@dataclass
class Samples:
    """Milliseconds per test: in all, and the strategy's parts around the work."""

    total: list[float] = field(default_factory=list)
    setup: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    flush: list[float] = field(default_factory=list)

    def add(self, start: float, entered: float, worked: float, left: float, end: float) -> None:
        for samples, seconds in (
            (self.total, end - start),
            (self.setup, entered - start),
            (self.teardown, left - worked),
            (self.flush, end - left),
        ):
            samples.append(seconds * 1000)

    @property
    def around(self) -> list[float]:
        """Setup plus teardown plus FLUSHDB of each test: the strategy timed directly."""
        return [sum(parts) for parts in zip(self.setup, self.teardown, self.flush, strict=True)]


def sync_work(session: Session, cache: CacheService, n: int) -> None:
    """The test body: three rows committed and read back, one value cached and read."""
    user = UserRepository(session).create(email=f"user{n}@example.com", name=f"User {n}")
    item = ItemRepository(session).create(name=f"Item {n}", description="", price=Decimal(n))
    order = OrderRepository(session).create(user_id=user.id, total=item.price)
    user_id, item_id, reference = user.id, item.id, order.reference
    session.commit()
    found = OrderRepository(session).get_by_reference(reference)
    again = ItemRepository(session).get(item_id)
    check(found is not None and found.user_id == user_id, "the order was not read back")
    check(again is not None, "the item was not read back")
    check(cache.set(f"order:{reference}", {"user": user_id}), "the cache refused a value")
    check(cache.get(f"order:{reference}") == {"user": user_id}, "the cache lost a value")


async def async_work(session: AsyncSession, cache: AsyncCacheService, n: int) -> None:
    """The same test body through asyncpg and redis.asyncio."""
    users, items = AsyncUserRepository(session), AsyncItemRepository(session)
    user = await users.create(email=f"user{n}@example.com", name=f"User {n}")
    item = await items.create(name=f"Item {n}", description="", price=Decimal(n))
    order = await AsyncOrderRepository(session).create(user_id=user.id, total=item.price)
    user_id, item_id, reference = user.id, item.id, order.reference
    await session.commit()
    found = await AsyncOrderRepository(session).get_by_reference(reference)
    again = await items.get(item_id)
    check(found is not None and found.user_id == user_id, "the order was not read back")
    check(again is not None, "the item was not read back")
    check(await cache.set(f"order:{reference}", {"user": user_id}), "the cache refused a value")
    check(await cache.get(f"order:{reference}") == {"user": user_id}, "the cache lost a value")


SyncLane = Lane[Engine, redis.Redis]
AsyncLane = Lane[AsyncEngine, redis.asyncio.Redis]
SyncIsolation = Callable[[SyncLane], AbstractContextManager[Session]]
AsyncIsolation = Callable[[AsyncLane], AbstractAsyncContextManager[AsyncSession]]


@contextmanager
def plain(lane: SyncLane) -> Iterator[Session]:
    with Session(lane.engine) as session:
        yield session


@contextmanager
def delete_rows(lane: SyncLane) -> Iterator[Session]:
    with Session(lane.engine) as session:
        yield session
    with lane.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@contextmanager
def recreate_tables(lane: SyncLane) -> Iterator[Session]:
    Base.metadata.create_all(lane.engine)
    with Session(lane.engine) as session:
        yield session
    Base.metadata.drop_all(lane.engine)


@contextmanager
def clone_database(lane: SyncLane) -> Iterator[Session]:
    name = f"t_{next(SERIAL)}"
    with lane.engine.connect() as admin:
        admin.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {lane.pg.database}")
    engine = create_engine(replace(lane.pg, database=name).url(SCHEMES["sync"]))
    with Session(engine) as session:
        yield session
    engine.dispose()
    with lane.engine.connect() as admin:
        admin.exec_driver_sql(f"DROP DATABASE {name}")


@asynccontextmanager
async def async_plain(lane: AsyncLane) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(lane.engine) as session:
        yield session


@asynccontextmanager
async def async_delete_rows(lane: AsyncLane) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(lane.engine) as session:
        yield session
    async with lane.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


@asynccontextmanager
async def async_recreate_tables(lane: AsyncLane) -> AsyncIterator[AsyncSession]:
    async with lane.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with AsyncSession(lane.engine) as session:
        yield session
    async with lane.engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)


@asynccontextmanager
async def async_clone_database(lane: AsyncLane) -> AsyncIterator[AsyncSession]:
    name = f"t_{next(SERIAL)}"
    async with lane.engine.connect() as admin:
        await admin.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {lane.pg.database}")
    engine = create_async_engine(replace(lane.pg, database=name).url(SCHEMES["async"]))
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()
    async with lane.engine.connect() as admin:
        await admin.exec_driver_sql(f"DROP DATABASE {name}")


SYNC: dict[str, SyncIsolation] = {
    BASELINE: plain,
    OURS: lambda lane: isolation.rollback_session(lane.engine),
    "TRUNCATE": lambda lane: isolation.committed_session(lane.engine),
    "DELETE": delete_rows,
    "drop_all/create_all": recreate_tables,
    "template database": clone_database,
}
ASYNC: dict[str, AsyncIsolation] = {
    BASELINE: async_plain,
    OURS: lambda lane: isolation.async_rollback_session(lane.engine),
    "TRUNCATE": lambda lane: isolation.async_committed_session(lane.engine),
    "DELETE": async_delete_rows,
    "drop_all/create_all": async_recreate_tables,
    "template database": async_clone_database,
}


def time_sync(name: str, lane: SyncLane, samples: Samples) -> None:
    stack = ExitStack()
    start = time.perf_counter()
    with stack:
        session = stack.enter_context(SYNC[name](lane))
        entered = time.perf_counter()
        sync_work(session, CacheService(lane.redis), next(SERIAL))
        worked = time.perf_counter()
    left = time.perf_counter()
    if lane.flush:
        lane.redis.flushdb()
    samples.add(start, entered, worked, left, time.perf_counter())


async def time_async(name: str, lane: AsyncLane, samples: Samples) -> None:
    stack = AsyncExitStack()
    start = time.perf_counter()
    async with stack:
        session = await stack.enter_async_context(ASYNC[name](lane))
        entered = time.perf_counter()
        await async_work(session, AsyncCacheService(lane.redis), next(SERIAL))
        worked = time.perf_counter()
    left = time.perf_counter()
    if lane.flush:
        await lane.redis.flushdb()
    samples.add(start, entered, worked, left, time.perf_counter())


def check(condition: bool, what: str) -> None:
    """Stop the benchmark when a strategy did not do its job: its figures would mean nothing."""
    if not condition:
        raise RuntimeError(f"isolation benchmark: {what}")
