"""The pytest plugin: options and fixture wiring only."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from servicematrix.backends import select_backend
from servicematrix.config import SETTINGS, Config
from servicematrix.errors import ServiceMatrixError
from servicematrix.faults import ServerControl
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker, new_run_id
from servicematrix.report import RunState, summary_lines, write_report

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

# SQLAlchemy, the drivers and redis-py are imported inside the fixtures that use them,
# so a pytest run that needs no servers does not pay seconds of imports for them.

STATE = pytest.StashKey[RunState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("servicematrix", "real PostgreSQL and Redis per worker")
    for s in SETTINGS:
        group.addoption(
            s.cli, dest=s.ini, default=None, help=f"{s.help}. ini: {s.ini}, env: {s.env}"
        )
        parser.addini(s.ini, s.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "committed: the test's db_session commits for real; tables are truncated after"
    )
    try:
        resolved = Config.resolve(
            cli=lambda stem: config.getoption("servicematrix_" + stem),
            ini=lambda key: config.getini(key) or None,
            env=os.environ,
        )
    except ServiceMatrixError as exc:
        raise pytest.UsageError(f"servicematrix: {exc}") from None
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        state = RunState(
            resolved, workerinput["servicematrix_run_id"], workerinput["servicematrix_backend"]
        )
    else:
        # Asked-for servers that cannot be had are a usage error before any worker starts.
        backend = _select(resolved) if resolved.explicit else None
        state = RunState(resolved, new_run_id(), backend)
    config.stash[STATE] = state


def _select(config: Config) -> str:
    try:
        return select_backend(config).name
    except ServiceMatrixError as exc:
        raise pytest.UsageError(f"servicematrix: {exc}") from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    state = node.config.stash[STATE]
    node.workerinput["servicematrix_run_id"] = state.run_id
    node.workerinput["servicematrix_backend"] = state.backend


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    output = getattr(node, "workeroutput", {}).get("servicematrix")
    if output:
        node.config.stash[STATE].workers.append(output)


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[STATE].header()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver" in metafunc.fixturenames:
        drivers = metafunc.config.stash[STATE].config.drivers
        metafunc.parametrize("driver", drivers, indirect=True, ids=drivers)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is None:
        write_report(state)
    elif state.own is not None:
        workeroutput["servicematrix"] = state.own


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = summary_lines(config.stash[STATE])
    if lines:
        terminalreporter.section("servicematrix")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def servicematrix_worker(request: pytest.FixtureRequest) -> Iterator[Worker]:
    """This process's servers, started on first use and removed at the end."""
    state = request.config.stash[STATE]
    workerinput = getattr(request.config, "workerinput", None)
    worker_id = workerinput["workerid"] if workerinput else "main"
    # An xdist worker's parent is the controller: servers must not outlive it either.
    watch_pid = os.getppid() if workerinput else None
    worker = _new_worker(state, worker_id, watch_pid)
    try:
        yield worker
    finally:
        state.record(worker_id, worker)
        worker.close()


def _new_worker(state: RunState, worker_id: str, watch_pid: int | None) -> Worker:
    try:
        backend = state.backend or select_backend(state.config).name
        return Worker(state.config, backend, state.run_id, worker_id, watch_pid)
    except ServiceMatrixError as exc:
        problem = exc
    raise _failure(problem)


def _ready(worker: Worker, which: str) -> ServerInfo:
    try:
        pg, rd = worker.ready()
    except ServiceMatrixError as exc:
        problem = exc
    else:
        return pg if which == "postgres" else rd
    raise _failure(problem)


def _failure(problem: ServiceMatrixError) -> BaseException:
    # Raised outside the except block: pytest would print the exception chain otherwise.
    return pytest.fail.Exception(f"servicematrix: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def pg_server(servicematrix_worker: Worker) -> ServerInfo:
    """This worker's PostgreSQL."""
    return _ready(servicematrix_worker, "postgres")


@pytest.fixture(scope="session")
def redis_server(servicematrix_worker: Worker) -> ServerInfo:
    """This worker's Redis (or Valkey)."""
    return _ready(servicematrix_worker, "redis")


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server: ServerInfo) -> None:
    """Override to create the schema once per worker (migrations, create_all)."""


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> str:
    """'sync' or 'async': tests that use it run once per selected driver."""
    return str(request.param)


@pytest.fixture(scope="session")
def sync_engine(
    pg_server: ServerInfo, servicematrix_db_setup: None, servicematrix_worker: Worker
) -> Iterator[Engine]:
    """A psycopg engine on this worker's database."""
    from sqlalchemy import create_engine

    engine = create_engine(pg_server.url("postgresql+psycopg"))
    servicematrix_worker.control().follow(engine)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def async_engine(
    pg_server: ServerInfo, servicematrix_db_setup: None, servicematrix_worker: Worker
) -> AsyncIterator[AsyncEngine]:
    """An asyncpg engine on this worker's database."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(pg_server.url("postgresql+asyncpg"))
    servicematrix_worker.control().follow(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def db_engine(driver: str, request: pytest.FixtureRequest) -> Any:
    """The engine of the test's driver."""
    return request.getfixturevalue(f"{driver}_engine")


def _committed(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("committed") is not None


@pytest.fixture
def sync_db_session(request: pytest.FixtureRequest, sync_engine: Engine) -> Iterator[Any]:
    """A Session rolled back after the test (or committing, under @pytest.mark.committed)."""
    from servicematrix import isolation

    isolate = isolation.committed_session if _committed(request) else isolation.rollback_session
    with isolate(sync_engine) as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def async_db_session(
    request: pytest.FixtureRequest, async_engine: AsyncEngine
) -> AsyncIterator[Any]:
    """An AsyncSession rolled back after the test (or committing, when marked committed)."""
    from servicematrix import isolation

    isolate = (
        isolation.async_committed_session
        if _committed(request)
        else isolation.async_rollback_session
    )
    async with isolate(async_engine) as session:
        yield session


@pytest.fixture
def db_session(driver: str, request: pytest.FixtureRequest) -> Any:
    """The isolated session of the test's driver: Session or AsyncSession."""
    return request.getfixturevalue(f"{driver}_db_session")


@pytest.fixture(scope="session")
def _sync_redis_client(redis_server: ServerInfo) -> Iterator[redis.Redis]:
    import redis

    client = redis.Redis.from_url(redis_server.url())
    yield client
    client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _async_redis_client(redis_server: ServerInfo) -> AsyncIterator[redis.asyncio.Redis]:
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # redis.asyncio sends on a pooled connection without noticing that a restart killed
    # it; one retry, on a fresh connection, costs nothing otherwise.
    client = redis.asyncio.Redis.from_url(redis_server.url(), retry=Retry(NoBackoff(), 1))
    yield client
    await client.aclose()


@pytest.fixture
def sync_redis(_sync_redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """A redis-py client on this worker's database, flushed after the test."""
    yield _sync_redis_client
    _sync_redis_client.flushdb()


@pytest_asyncio.fixture(loop_scope="session")
async def async_redis(
    _async_redis_client: redis.asyncio.Redis,
) -> AsyncIterator[redis.asyncio.Redis]:
    """A redis.asyncio client on this worker's database, flushed after the test."""
    yield _async_redis_client
    await _async_redis_client.flushdb()


@pytest.fixture
def redis_client(driver: str, request: pytest.FixtureRequest) -> Any:
    """The Redis client of the test's driver, flushed after the test."""
    return request.getfixturevalue(f"{driver}_redis")


@pytest.fixture
def servicematrix_servers(
    servicematrix_worker: Worker, pg_server: ServerInfo, redis_server: ServerInfo
) -> Iterator[ServerControl]:
    """This worker's own servers, to stop, start, restart, pause and resume for real.

    Skips where the servers are not ours to stop (the external backend). Whatever
    the test leaves stopped or paused is brought back after it.
    """
    control = servicematrix_worker.control()
    if control.unavailable:
        pytest.skip(f"servicematrix: {control.unavailable}")
    try:
        yield control
    finally:
        control.recover()
