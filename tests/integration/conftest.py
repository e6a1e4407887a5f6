"""Fixtures of the shop suite, built on the servicematrix plugin's fixtures.

Fixtures that depend on ``driver`` (through ``db_session`` or ``redis_client``)
hand out the sync or the async variant, so every test runs under both.

The xdist controller imports this file too, though it runs no test: the app, the
drivers and the helpers are imported inside the fixtures, so it starts its workers
without paying seconds of imports that only the workers need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from servicematrix import ServerInfo

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from shop.config import Settings
    from shop.repositories import (
        AsyncItemRepository,
        AsyncOrderRepository,
        AsyncUserRepository,
        ItemRepository,
        OrderRepository,
        UserRepository,
    )
    from shop.services import AsyncOrderService, OrderService

    from .support import AnyCache, Gate

SyncT = TypeVar("SyncT")
AsyncT = TypeVar("AsyncT")
SCHEMES = {"sync": "postgresql+psycopg", "async": "postgresql+asyncpg"}
# Generous: on a loaded CI machine a slow reply must not pass for an outage.
# An unreachable Redis refuses at once, so this costs the outage tests nothing.
REDIS_TIMEOUT = 2.0
# Modules holding the suite's longest tests (generated requests, property tests, server
# restarts). They start first: under xdist, short tests then fill the end of the run on
# every worker, instead of one worker running the long ones last while the others idle.
LONGEST_FIRST = ("test_schema.py", "test_properties.py", "test_faults.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest tests first; every other test keeps its place."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server: ServerInfo) -> None:
    """The schema comes from the migrations, as in production."""
    from shop.db import migrate

    migrate(pg_server.url("postgresql+psycopg"))


def for_session(
    session: Session | AsyncSession,
    sync: Callable[[Session], SyncT],
    asyncio: Callable[[AsyncSession], AsyncT],
) -> SyncT | AsyncT:
    """``asyncio(session)`` for an AsyncSession, else ``sync(session)``."""
    from sqlalchemy.ext.asyncio import AsyncSession

    return asyncio(session) if isinstance(session, AsyncSession) else sync(session)


@pytest.fixture
def users(db_session: Session | AsyncSession) -> UserRepository | AsyncUserRepository:
    """The user repository of the test's driver."""
    from shop.repositories import AsyncUserRepository, UserRepository

    return for_session(db_session, UserRepository, AsyncUserRepository)


@pytest.fixture
def items(db_session: Session | AsyncSession) -> ItemRepository | AsyncItemRepository:
    """The item repository of the test's driver."""
    from shop.repositories import AsyncItemRepository, ItemRepository

    return for_session(db_session, ItemRepository, AsyncItemRepository)


@pytest.fixture
def orders(db_session: Session | AsyncSession) -> OrderRepository | AsyncOrderRepository:
    """The order repository of the test's driver."""
    from shop.repositories import AsyncOrderRepository, OrderRepository

    return for_session(db_session, OrderRepository, AsyncOrderRepository)


@pytest.fixture
def order_service(db_session: Session | AsyncSession) -> OrderService | AsyncOrderService:
    """The order service of the test's driver."""
    from shop.services import AsyncOrderService, OrderService

    return for_session(db_session, OrderService, AsyncOrderService)


@pytest.fixture
def cache(redis_client: Any) -> AnyCache:
    """The cache of the test's driver, on the plugin's per-test Redis database."""
    from .support import cache_for

    return cache_for(redis_client)


@pytest.fixture
def settings(driver: str, pg_server: ServerInfo, redis_server: ServerInfo) -> Settings:
    """Settings naming this worker's servers, with the test's driver."""
    from shop.config import Settings

    return Settings(
        database_url=pg_server.url(SCHEMES[driver]),
        redis_url=redis_server.url(),
        redis_timeout=REDIS_TIMEOUT,
    )


@pytest.fixture
def app(settings: Settings, db_session: Session | AsyncSession, cache: AnyCache) -> FastAPI:
    """The app on the test's session (rolled back afterwards) and Redis database."""
    from .support import build_app

    return build_app(settings, db_session, cache)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on ``app``."""
    from .support import http_client

    async with http_client(app) as client:
        yield client


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses every connection for the whole test."""
    from .support import loopback_socket

    with loopback_socket() as sock:
        yield sock.getsockname()[1]


@pytest.fixture
async def redis_gate(redis_server: ServerInfo) -> AsyncIterator[Gate]:
    """A closed port that, once opened, forwards to this worker's Redis."""
    from .support import Gate

    gate = Gate((redis_server.host, redis_server.port))
    try:
        yield gate
    finally:
        gate.close()


@pytest.fixture
async def gated_cache(
    driver: str, redis_server: ServerInfo, redis_gate: Gate
) -> AsyncIterator[AnyCache]:
    """A cache whose Redis is unreachable until ``redis_gate.open()``."""
    import redis.asyncio

    from shop.cache import async_client, sync_client

    from .support import cache_for

    parts = urlsplit(redis_server.url())
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    url = urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{redis_gate.port}"))
    make_client = sync_client if driver == "sync" else async_client
    client = make_client(url, REDIS_TIMEOUT)
    try:
        yield cache_for(client)
    finally:
        if isinstance(client, redis.asyncio.Redis):
            await client.aclose()
        else:
            client.close()


@pytest.fixture
async def gated_client(
    settings: Settings, db_session: Session | AsyncSession, gated_cache: AnyCache
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on an app whose Redis is unreachable until ``redis_gate.open()``."""
    from .support import build_app, http_client

    async with http_client(build_app(settings, db_session, gated_cache)) as client:
        yield client
