"""Server control for fault tests: real stops, starts, restarts and pauses, same URLs after."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait

import psycopg
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from servicematrix.backends.docker import DockerBackend
from servicematrix.config import Config
from servicematrix.control import ServerControl
from servicematrix.errors import ControlError
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker, new_run_id

from .leftovers import wait_for_no_leftovers
from .support import PG, REDIS

CLEANUP_SECONDS = 15.0
PAUSED_TIMEOUT = 0.2


@pytest.fixture(scope="module", params=["local", "docker"])
def control(request: pytest.FixtureRequest) -> Iterator[ServerControl]:
    """A worker of each backend that owns its servers; docker skips without an engine."""
    config = Config.parse({"backend": request.param, "pg": str(PG), "redis": str(REDIS)})
    if request.param == "docker":
        reason = DockerBackend.unavailable(config)
        if reason:
            if os.environ.get("CI"):
                pytest.fail(f"docker backend unavailable under CI: {reason}")
            pytest.skip(reason)
    with Worker(config, request.param, new_run_id(), "control") as worker:
        worker.ready().values()
        yield worker.control()


def refuses(server: ServerInfo) -> bool:
    try:
        socket.create_connection((server.host, server.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def redis_of(control: ServerControl, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(
        control.servers["redis"].url(), socket_timeout=timeout, socket_connect_timeout=timeout
    )


def pg_query(control: ServerControl, sql: str) -> object:
    with psycopg.connect(control.servers["pg"].url(), autocommit=True) as conn:
        cursor = conn.execute(sql)
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


def test_stopped_redis_refuses_and_comes_back_empty_on_its_url(control: ServerControl) -> None:
    server = control.servers["redis"]
    with redis_of(control) as client:
        client.set("kept?", "no: SIGKILL and no persistence")

        assert control.stop("redis") > 0
        assert (control.state("redis"), refuses(server)) == ("stopped", True)
        control.start("redis")

        assert control.state("redis") == "running"
        assert control.servers["redis"] == server
        assert client.get("kept?") is None  # the same client reconnects to the same URL


def test_restarted_postgres_keeps_its_data_url_and_password(control: ServerControl) -> None:
    pg_query(control, "CREATE TABLE IF NOT EXISTS kept (n int); INSERT INTO kept VALUES (1)")
    started_before = pg_query(control, "SELECT pg_postmaster_start_time()")

    outage = control.restart("pg")

    assert 0 < outage < 30
    assert pg_query(control, "SELECT count(*) FROM kept") == 1
    assert pg_query(control, "SELECT pg_postmaster_start_time()") != started_before


def test_paused_redis_answers_nothing_until_resumed(control: ServerControl) -> None:
    with redis_of(control, PAUSED_TIMEOUT) as client:
        client.set("kept", "yes")

        control.pause("redis")
        with pytest.raises(redis.TimeoutError):
            client.get("kept")
        control.resume("redis")

        assert client.get("kept") == b"yes"


def test_a_paused_postgres_session_waits_and_then_goes_on(control: ServerControl) -> None:
    with (
        psycopg.connect(control.servers["pg"].url(), autocommit=True) as conn,
        ThreadPoolExecutor(1) as pool,
    ):
        control.pause("pg")
        answer = pool.submit(lambda: conn.execute("SELECT 2").fetchone())
        done, _ = wait([answer], timeout=PAUSED_TIMEOUT)
        assert not done  # frozen: the query gets no answer
        control.resume("pg")

        assert answer.result(timeout=10) == (2,)


def test_misuse_changes_nothing_and_says_so_in_one_line(control: ServerControl) -> None:
    with pytest.raises(ControlError, match=r"^redis is running, not stopped: nothing was changed$"):
        control.start("redis")
    with pytest.raises(ControlError, match=r"^no server called 'mysql': use one of pg, redis"):
        control.stop("mysql")  # type: ignore[arg-type]
    assert control.state("redis") == control.state("pg") == "running"


def test_the_old_name_of_pg_still_works_and_says_so(control: ServerControl) -> None:
    old = "postgres"
    with pytest.deprecated_call(match='"postgres" is now called "pg"'):
        assert control.pause(old) >= 0  # type: ignore[arg-type]
    assert control.state("pg") == "paused"
    with pytest.deprecated_call(match='"postgres" is now called "pg"'):
        control.resume(old)  # type: ignore[arg-type]
    assert control.state("pg") == "running"
    with pytest.deprecated_call(match='"postgres" is now called "pg"'):
        assert control.servers[old] is control.servers["pg"]  # type: ignore[index]


def test_recover_brings_back_whatever_was_left_down(control: ServerControl) -> None:
    control.stop("pg")
    control.pause("redis")

    control.recover()

    assert pg_query(control, "SELECT 1") == 1
    with redis_of(control) as client:
        assert client.ping()


def test_followed_engine_replaces_connections_a_restart_killed(control: ServerControl) -> None:
    url = control.servers["pg"].url("postgresql+psycopg")
    followed, plain = create_engine(url), create_engine(url)
    control.follow(followed)
    try:
        for engine in (followed, plain):
            with engine.connect() as conn:  # each pool now holds one connection
                conn.execute(text("SELECT 1"))
        epoch = control.epoch("pg")

        control.restart("pg")

        assert control.epoch("pg") == epoch + 1
        with followed.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        with pytest.raises(DBAPIError), plain.connect() as conn:
            conn.execute(text("SELECT 1"))  # what the plugin's engines would do unfollowed
    finally:
        followed.dispose()
        plain.dispose()


RESTART_THEN_DIE = """
import json, os, pathlib, signal, sys
import psycopg, redis
from servicematrix.config import Config
from servicematrix.provision import Worker, new_run_id

config = Config.parse({{"backend": "local", "pg": "{pg}", "redis": "{redis}"}})
worker = Worker(config, "local", new_run_id(), "doomed", os.getppid())
pg, redis_info = worker.ready().values()
control = worker.control()
control.restart("pg")
control.restart("redis")
with psycopg.connect(pg.url()) as conn:
    datadir = conn.execute("SHOW data_directory").fetchone()[0]
with redis.Redis.from_url(redis_info.url()) as client:
    redis_pid = client.info("server")["process_id"]
pg_pid = int(pathlib.Path(datadir, "postmaster.pid").read_text().split()[0])
print(json.dumps({{"pids": [pg_pid, redis_pid], "workdir": str(pathlib.Path(datadir).parent)}}))
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_servers_started_again_are_reaped_when_their_owner_dies() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RESTART_THEN_DIE.format(pg=PG, redis=REDIS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])

    assert wait_for_no_leftovers([record], CLEANUP_SECONDS) == []


def test_external_servers_are_not_ours_to_stop(servers: tuple[ServerInfo, ServerInfo]) -> None:
    pg, redis_info = servers
    config = Config.parse(
        {"backend": "external", "pg_url": pg.url(), "redis_url": redis_info.url()}
    )
    with Worker(config, "external", new_run_id(), "external-control") as worker:
        worker.ready().values()
        control = worker.control()

        assert control.unavailable == (
            "the external backend's servers are not ours to stop; fault tests need "
            "--servicematrix-backend=local or docker"
        )
        with pytest.raises(ControlError, match="not ours to stop"):
            control.stop("redis")


FIXTURE_USE = """
import pytest
from sqlalchemy import text

async def run(result):
    return await result if hasattr(result, "__await__") else result

async def test_a_restart_and_a_stop_left_behind(
    sync_engine, async_engine, sync_redis, async_redis, servicematrix_servers
):
    # Every session-scoped pool now holds a connection that the faults below kill.
    with sync_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    async with async_engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert sync_redis.ping() and await async_redis.ping()
    assert servicematrix_servers.restart("pg") > 0
    servicematrix_servers.stop("redis")  # the fixture brings it back after the test

async def test_later_tests_use_the_same_engines_and_clients(db_session, redis_client):
    assert (await run(db_session.execute(text("SELECT 1")))).scalar() == 1
    assert await run(redis_client.ping())
"""


def test_fixture_recovers_and_later_tests_in_the_worker_pass(inner: pytest.Pytester) -> None:
    inner.makepyfile(FIXTURE_USE)
    # A subprocess: an in-process run would import asyncpg anew after an earlier
    # in-process run dropped it, and a C extension imported twice can crash.
    result = inner.runpytest_subprocess("-p", "no:randomly", "--servicematrix-backend=local")
    result.assert_outcomes(passed=3)


def test_fixture_skips_on_the_external_backend_with_the_reason(
    inner: pytest.Pytester, servers: tuple[ServerInfo, ServerInfo]
) -> None:
    pg, redis_info = servers
    inner.makepyfile("def test_fault(servicematrix_servers):\n    raise AssertionError\n")
    result = inner.runpytest(
        "-rs", f"--servicematrix-pg-url={pg.url()}", f"--servicematrix-redis-url={redis_info.url()}"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * servicematrix: the external backend's servers are*"])
