"""The pytest plugin: options, hooks and fixture wiring only.

After collection the run knows which servers its tests use. Once, before any test (in
the xdist controller, from what its workers collected; under -n 0 in pytest itself), it
chooses the backend, pulls what is missing with progress shown, or stops with one usage
error. Each process that runs tests then starts those servers side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from servicematrix import drivers, envmap
from servicematrix.backends import Choice, backend_class, select_backend
from servicematrix.config import SETTINGS, Config
from servicematrix.config import Backend as BackendName
from servicematrix.control import ServerControl
from servicematrix.errors import ServiceMatrixError
from servicematrix.handoff import Handoff
from servicematrix.info import Role, ServerInfo
from servicematrix.provision import Worker, new_run_id
from servicematrix.report import RunState, summary_lines, write_report
from servicematrix.reset import APPLICATION_NAME
from servicematrix.schema import Schema, schema_for

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine

# SQLAlchemy, the drivers and redis-py are imported inside the fixtures that use them,
# so a pytest run that needs no servers does not pay seconds of imports for them.

STATE = pytest.StashKey[RunState]()
# What pytest_load_initial_conftests resolved and started: config, backend, servers, run id.
EARLY = pytest.StashKey[tuple[Config, Choice | None, Worker | None, str]]()
PREFIX = "servicematrix: "


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("servicematrix", "real PostgreSQL and Redis per worker")
    for s in SETTINGS:
        group.addoption(
            s.cli, dest=s.ini, default=None, help=f"{s.help}. ini: {s.ini}, env: {s.env}"
        )
        parser.addini(s.ini, s.help, type=s.ini_type, default=None)


def _resolve(config: pytest.Config, options: Any) -> Config:
    """The settings; an old name among them is a warning under the project's filters (an
    error where it makes warnings errors: one line, before any test)."""
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            resolved = Config.resolve(
                cli=lambda stem: getattr(options, "servicematrix_" + stem, None),
                ini=lambda key: _ini_text(config.getini(key)),
                env=os.environ,
            )
        for warning in seen:
            message = warning.message
            if not isinstance(message, Warning):
                message = warning.category(message)
            config.issue_config_time_warning(message, stacklevel=2)
    except ServiceMatrixError as exc:
        raise pytest.UsageError(PREFIX + str(exc)) from None
    except Warning as exc:
        raise pytest.UsageError(
            f"{PREFIX}{exc} (a warning, which filterwarnings makes an error)"
        ) from None
    return resolved


def _ini_text(value: object) -> str | None:
    """An ini value as text: a TOML list (pyproject.toml) is its items, space-separated."""
    if isinstance(value, list):
        return " ".join(str(item) for item in value) or None
    return str(value) if value else None


def _schema(config: Config, pytest_config: pytest.Config) -> Schema | None:
    try:
        return schema_for(config.schema_from, pytest_config.rootpath)
    except ServiceMatrixError as exc:
        raise pytest.UsageError(PREFIX + str(exc)) from None


def _in_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _in_controller(config: pytest.Config) -> bool:
    """True in the xdist controller, which hands tests to workers and runs none itself."""
    return config.pluginmanager.has_plugin("dsession")


def _worker_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", {})
    return str(workerinput.get("workerid") or os.environ.get("PYTEST_XDIST_WORKER") or "main")


def _early_controller(options: Any) -> bool:
    """Before xdist has set a worker up, tell its controller by the -n option it was given."""
    return not os.environ.get("PYTEST_XDIST_WORKER") and bool(
        getattr(options, "numprocesses", None) or getattr(options, "tx", None)
    )


def _run_id(given: object) -> str:
    """An id safe in names (dirs, labels, databases); xdist's testrunuid where there is one."""
    return re.sub(r"[^a-z0-9]", "", str(given or "").lower())[:16] or new_run_id()


def _choose(config: Config, roles: set[Role], pytest_config: pytest.Config) -> Choice:
    """The backend for ``roles``, its images pulled; a usage error if none can serve."""
    reporter = pytest_config.pluginmanager.get_plugin("terminalreporter")

    def report(line: str) -> None:
        if reporter is not None:
            reporter.write_line(PREFIX + line)
        else:  # before the terminal exists: the servers named by the env setting
            print(PREFIX + line, file=sys.stderr, flush=True)

    try:
        return select_backend(config, roles, report)
    except ServiceMatrixError as exc:
        raise pytest.UsageError(PREFIX + str(exc)) from None


def _decide(state: RunState, roles: set[Role], config: pytest.Config) -> None:
    """Choose (or check the earlier choice) once for every server the tests use."""
    if state.choice is None:
        state.choice = _choose(state.config, roles, config)
    elif not roles <= state.roles:
        # The backend chosen earlier (for the env setting's servers) must serve these too.
        _choose(
            dataclasses.replace(state.config, backend=cast(BackendName, state.choice.name)),
            roles,
            config,
        )
    state.roles |= roles


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Servers named by ``env`` start now: conftests and apps read the variables at import."""
    options = early_config.known_args_namespace
    config = _resolve(early_config, options)
    # In an xdist worker, workerinput does not exist yet; xdist set these variables.
    run_id = _run_id(os.environ.get("PYTEST_XDIST_TESTRUNUID"))
    roles = envmap.roles(config.env)
    choice = _choose(config, roles, early_config) if roles else None
    worker = None
    if choice is not None and not _early_controller(options):
        schema = _schema(config, early_config)
        worker = _new_worker(config, choice, run_id, roles, _worker_id(early_config), schema=schema)
        servers = _ready(worker)
    else:
        servers = None  # the controller runs no test: stand-ins that refuse connections
    os.environ.update(envmap.render(config.env, servers))
    early_config.stash[EARLY] = (config, choice, worker, run_id)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "committed: the test's db_session commits for real; tables are truncated after"
    )
    workerinput = getattr(config, "workerinput", {})
    early = config.stash.get(EARLY, None)
    resolved, choice, worker, run_id = early or (
        _resolve(config, config.option),
        None,
        None,
        _run_id(workerinput.get("testrunuid") or getattr(config.option, "testrunuid", None)),
    )
    asyncio = config.pluginmanager.has_plugin("asyncio")
    for driver in resolved.drivers or ():
        if driver == "async" and (problem := drivers.unavailable(driver, (), asyncio)):
            raise pytest.UsageError(PREFIX + problem)
    if asyncio:
        from servicematrix import asyncfixtures

        scope = asyncfixtures.loop_scope(config)
        config.pluginmanager.register(asyncfixtures.plugin(scope), "servicematrix.asyncio")
    state = RunState(resolved, run_id, choice, worker, roles=envmap.roles(resolved.env))
    state.schema = _schema(resolved, config)
    if "servicematrix_handoff" in workerinput:
        state.handoff = Handoff(Path(workerinput["servicematrix_handoff"]))
    elif _early_controller(config.option):
        state.handoff = Handoff.create(run_id)
        if getattr(config.option, "testrunuid", "") is None:
            config.option.testrunuid = run_id  # xdist hands it to every worker
    config.stash[STATE] = state


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.handoff is not None and not _in_worker(config):
        state.handoff.remove()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the servers the collected tests use; under -n 0, choose and start them now."""
    state = session.config.stash[STATE]
    roles = envmap.roles(state.config.env)
    for item in session.items:
        roles |= drivers.roles_used(getattr(item, "fixturenames", ()))
    if _in_worker(session.config):
        # Before xdist tells the controller that collection is done: it reads this then.
        assert state.handoff is not None
        state.handoff.write_roles(_worker_id(session.config), roles)
    elif roles and not _in_controller(session.config):
        _decide(state, roles, session.config)
        _start(state, roles, _worker_id(session.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """In the controller, before any test is scheduled: the run's one choice, for all."""
    state = node.config.stash[STATE]
    if state.handoff is None or state.handoff.choice() is not None:
        return
    roles = state.handoff.roles(node.workerinput["workerid"]) | state.roles
    if roles:
        _decide(state, roles, node.config)
        assert state.choice is not None
        state.handoff.write_choice(state.choice.name, state.choice.why, state.roles)


def _start(state: RunState, roles: set[Role], worker_id: str) -> None:
    assert state.choice is not None
    if state.worker is not None:
        state.worker.start(roles)
        return
    state.worker = _new_worker(
        state.config, state.choice, state.run_id, roles, worker_id, schema=state.schema
    )
    if state.handoff is not None:
        # Should the controller die, killed, the workers' reapers remove its notes.
        state.worker.track_path(state.handoff.directory)


# PostgreSQL's words for CREATE EXTENSION of one the server does not have.
_NO_EXTENSION = re.compile(r'extension "[^"]+" is not available|could not open extension control')


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test that failed for an extension this worker's PostgreSQL lacks is told why."""
    report = yield
    worker = item.config.stash[STATE].worker
    limit = worker.backend.limits.get("pg") if worker is not None else None
    if limit and report.failed and call.excinfo and _NO_EXTENSION.search(str(call.excinfo.value)):
        report.sections.append(("servicematrix", limit))
    if worker is not None and report.when == "call" and report.failed:
        report.sections.extend(_kept(worker, item))
    return report


# The fixtures whose data a failing test keeps (keep_failed): they reset it afterwards.
_SESSIONS = {"db_session", "sync_db_session", "async_db_session"}
_REDIS_CLIENTS = {"redis_client", "sync_redis", "async_redis"}


def _kept(worker: Worker, item: pytest.Item) -> list[tuple[str, str]]:
    """Claim where the failed ``item``'s data is kept; the lines that tell the user."""
    used = set(getattr(item, "fixturenames", ()))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    try:
        kept = worker.keep(
            item.nodeid,
            pg=bool(used & _SESSIONS),
            redis=bool(used & _REDIS_CLIENTS),
            workers=workers,
        )
    except ServiceMatrixError as exc:
        return [("servicematrix", PREFIX + str(exc))]
    return [("servicematrix", "\n".join(kept.lines()))] if kept else []


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Our errors in the block as one-line failures, without the traceback."""
    try:
        yield
    except ServiceMatrixError as exc:
        problem = exc
    else:
        return
    raise _failure(problem)


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[STATE].header()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver" not in metafunc.fixturenames:
        return
    asked = metafunc.config.stash[STATE].config.drivers
    roles = drivers.roles_used(metafunc.fixturenames)
    asyncio = metafunc.config.pluginmanager.has_plugin("asyncio")
    for driver in asked or ():
        if problem := drivers.unavailable(driver, roles, asyncio):
            raise pytest.UsageError(PREFIX + problem)
    runnable = drivers.runnable(asked, roles, asyncio)
    if not runnable:
        lacking = drivers.unavailable("sync", roles, asyncio)
        raise pytest.UsageError(f"{PREFIX}{metafunc.definition.nodeid} uses {lacking}")
    metafunc.parametrize("driver", runnable, indirect=True, ids=runnable)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    handoff = node.config.stash[STATE].handoff
    if handoff is not None:
        node.workerinput["servicematrix_handoff"] = str(handoff.directory)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    output = getattr(node, "workeroutput", {}).get("servicematrix")
    if output:
        node.config.stash[STATE].workers.append(output)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After the session's fixtures are torn down: stop this process's servers."""
    state = session.config.stash[STATE]
    state.record(_worker_id(session.config))
    if state.worker is not None:
        state.worker.close()
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


def _new_worker(
    config: Config,
    choice: Choice,
    run_id: str,
    roles: set[Role],
    worker_id: str,
    *,
    schema: Schema | None,
) -> Worker:
    # An xdist worker's parent is the controller: servers must not outlive it either.
    watch_pid = os.getppid() if worker_id != "main" else None
    try:
        return Worker(config, choice.name, run_id, worker_id, watch_pid, roles=roles, schema=schema)
    except ServiceMatrixError as exc:
        problem = exc
    raise _failure(problem)


def _ready(worker: Worker, role: Role | None = None) -> Any:
    try:
        return worker.ready() if role is None else worker.server(role)
    except ServiceMatrixError as exc:
        problem = exc
    raise _failure(problem)


def _failure(problem: ServiceMatrixError) -> BaseException:
    # Raised outside the except block: pytest would print the exception chain otherwise.
    return pytest.fail.Exception(PREFIX + str(problem), pytrace=False)


@pytest.fixture(scope="session")
def servicematrix_worker(request: pytest.FixtureRequest) -> Worker:
    """This process's servers: those its tests use start together, at the first that needs one."""
    state = request.config.stash[STATE]
    note = state.handoff.choice() if state.handoff is not None else None
    if note is not None and state.worker is None:
        name, why, roles = note
        state.choice, state.roles = Choice(backend_class(name), why), roles
        _start(state, roles, _worker_id(request.config))
    if state.worker is None:  # no test was seen to use a server: this one asks for one
        _decide(state, set(), request.config)
        _start(state, set(), _worker_id(request.config))
    assert state.worker is not None
    return state.worker


@pytest.fixture(scope="session")
def pg_server(servicematrix_worker: Worker) -> ServerInfo:
    """This worker's PostgreSQL."""
    return _ready(servicematrix_worker, "pg")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def redis_server(servicematrix_worker: Worker) -> ServerInfo:
    """This worker's Redis (or Valkey)."""
    return _ready(servicematrix_worker, "redis")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server: ServerInfo) -> None:
    """Override to create the schema once per worker (migrations, create_all)."""


@pytest.fixture(scope="session")
def servicematrix_schema(request: pytest.FixtureRequest, servicematrix_worker: Worker) -> None:
    """The schema in this worker's database: from the template kept for its files
    (servicematrix_schema_from), or made by ``servicematrix_db_setup``."""

    def setup() -> None:
        request.getfixturevalue("servicematrix_db_setup")

    try:
        servicematrix_worker.give_schema(setup)
    except ServiceMatrixError as exc:
        problem = exc
    else:
        return
    raise _failure(problem)


@pytest.fixture(scope="session")
def servicematrix_session_class() -> type[Any]:
    """The class of ``db_session`` under the sync driver; override for e.g. SQLModel's."""
    from sqlalchemy.orm import Session

    return Session


@pytest.fixture(scope="session")
def servicematrix_async_session_class() -> type[Any]:
    """The class of ``db_session`` under the async driver."""
    from sqlalchemy.ext.asyncio import AsyncSession

    return AsyncSession


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> str:
    """'sync' or 'async': tests that use it run once per driver installed (or asked for)."""
    return str(request.param)


@pytest.fixture(scope="session")
def sync_engine(
    pg_server: ServerInfo, servicematrix_schema: None, servicematrix_worker: Worker
) -> Iterator[Engine]:
    """A psycopg engine on this worker's database."""
    from sqlalchemy import create_engine

    named = {"application_name": APPLICATION_NAME}  # connections the clone reset may end
    engine = create_engine(pg_server.url("postgresql+psycopg"), connect_args=named)
    servicematrix_worker.control().follow(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_engine(driver: str, request: pytest.FixtureRequest) -> Any:
    """The engine of the test's driver."""
    return request.getfixturevalue(f"{driver}_engine")


@pytest.fixture
def sync_db_session(
    request: pytest.FixtureRequest,
    sync_engine: Engine,
    servicematrix_session_class: type[Any],
    servicematrix_worker: Worker,
) -> Iterator[Any]:
    """A Session rolled back after the test (or committing, under @pytest.mark.committed)."""
    from servicematrix import isolation

    keep = functools.partial(servicematrix_worker.pg_copy, request.node.nodeid)
    args = (sync_engine, servicematrix_session_class, keep)
    if request.node.get_closest_marker("committed") is not None:
        isolated = isolation.committed_session(*args, servicematrix_worker.clone)
    else:
        isolated = isolation.rollback_session(*args)
    with reported(), isolated as session:
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


@pytest.fixture
def sync_redis(
    request: pytest.FixtureRequest,
    _sync_redis_client: redis.Redis,
    redis_server: ServerInfo,
    servicematrix_worker: Worker,
) -> Iterator[redis.Redis]:
    """A redis-py client on this worker's database, flushed after the test."""
    yield _sync_redis_client
    try:
        with reported():
            servicematrix_worker.keep_redis(request.node.nodeid, redis_server)
    finally:
        _sync_redis_client.flushdb()


@pytest.fixture
def redis_client(driver: str, request: pytest.FixtureRequest) -> Any:
    """The Redis client of the test's driver, flushed after the test."""
    return request.getfixturevalue(f"{driver}_redis")


@pytest.fixture
def servicematrix_servers(servicematrix_worker: Worker) -> Iterator[ServerControl]:
    """This worker's own servers, to stop, start, restart, pause and resume for real.

    Skips where the servers are not ours to stop (the external backend). Whatever
    the test leaves stopped or paused is brought back after it.
    """
    control = servicematrix_worker.control()
    if control.unavailable:
        pytest.skip(PREFIX + control.unavailable)
    try:
        yield control
    finally:
        control.recover()
