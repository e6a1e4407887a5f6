"""The async fixtures, registered only where pytest-asyncio is installed.

A connection belongs to the event loop that opened it. Where tests share one loop per
session (``asyncio_default_test_loop_scope = session``), the engine and the Redis client
live as long as the session and pool their connections. Under pytest-asyncio's default,
a loop per test, each test gets an engine and a client of its own, on its own loop.
"""

from __future__ import annotations

import functools
import types
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from servicematrix.info import ServerInfo
from servicematrix.plugin import reported
from servicematrix.provision import Worker
from servicematrix.reset import APPLICATION_NAME

if TYPE_CHECKING:
    import redis.asyncio
    from sqlalchemy.ext.asyncio import AsyncEngine

LOOP_SCOPES = ("session", "function")


def loop_scope(config: pytest.Config) -> str:
    """'session' where every test runs in the session's loop, else 'function'."""
    try:
        scope = config.getini("asyncio_default_test_loop_scope")
    except ValueError:  # a pytest-asyncio older than the setting: one loop per test
        return "function"
    return "session" if scope == "session" else "function"


def plugin(scope: str) -> types.ModuleType:
    """A module of async fixtures whose connections live in loops of ``scope``."""
    shared = scope == "session"
    # loop_scope exists from pytest-asyncio 0.24 on; session loops are only chosen where
    # asyncio_default_test_loop_scope exists, which is newer still.
    lasting: dict[str, Any] = {"scope": "session", "loop_scope": "session"} if shared else {}
    per_test: dict[str, Any] = {"loop_scope": "session"} if shared else {}

    @pytest_asyncio.fixture(**lasting)
    async def async_engine(
        pg_server: ServerInfo, servicematrix_schema: None, servicematrix_worker: Worker
    ) -> AsyncIterator[AsyncEngine]:
        """An asyncpg engine on this worker's database."""
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        pool: dict[str, Any] = {} if shared else {"poolclass": NullPool}
        named = {"server_settings": {"application_name": APPLICATION_NAME}}
        engine = create_async_engine(
            pg_server.url("postgresql+asyncpg"), connect_args=named, **pool
        )
        if shared:
            servicematrix_worker.control().follow(engine)
        yield engine
        await engine.dispose()

    @pytest_asyncio.fixture(**per_test)
    async def async_db_session(
        request: pytest.FixtureRequest,
        async_engine: AsyncEngine,
        servicematrix_async_session_class: type[Any],
        servicematrix_worker: Worker,
    ) -> AsyncIterator[Any]:
        """An AsyncSession rolled back after the test (or committing, when marked committed)."""
        from servicematrix import isolation

        keep = functools.partial(servicematrix_worker.pg_copy, request.node.nodeid)
        args = (async_engine, servicematrix_async_session_class, keep)
        if request.node.get_closest_marker("committed") is not None:
            isolated = isolation.async_committed_session(*args, servicematrix_worker.clone)
        else:
            isolated = isolation.async_rollback_session(*args)
        with reported():
            async with isolated as session:
                yield session

    @pytest_asyncio.fixture(**lasting)
    async def _async_redis_client(
        redis_server: ServerInfo,
    ) -> AsyncIterator[redis.asyncio.Redis]:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as Disconnected

        # redis.asyncio sends on a pooled connection without noticing that a restart
        # killed it; one retry, on a fresh connection, costs nothing otherwise. (redis 4
        # retries only the errors it is told to.)
        client = redis.asyncio.Redis.from_url(
            redis_server.url(), retry=Retry(NoBackoff(), 1), retry_on_error=[Disconnected]
        )
        yield client
        # aclose() from redis 5.0.1; close() before it, which can leave pooled connections
        # to be closed by the collector after their loop is gone (an unraisable warning).
        await getattr(client, "aclose", client.close)()
        await client.connection_pool.disconnect()

    @pytest_asyncio.fixture(**per_test)
    async def async_redis(
        request: pytest.FixtureRequest,
        _async_redis_client: redis.asyncio.Redis,
        redis_server: ServerInfo,
        servicematrix_worker: Worker,
    ) -> AsyncIterator[redis.asyncio.Redis]:
        """A redis.asyncio client on this worker's database, flushed after the test."""
        yield _async_redis_client
        try:
            with reported():
                servicematrix_worker.keep_redis(request.node.nodeid, redis_server)
        finally:
            await _async_redis_client.flushdb()

    module = types.ModuleType(f"servicematrix.asyncfixtures.{scope}")
    for fixture in (async_engine, async_db_session, _async_redis_client, async_redis):
        setattr(module, getattr(fixture, "name", None) or fixture.__name__, fixture)
    return module
