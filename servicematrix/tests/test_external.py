"""The external backend: per-worker databases on servers we do not own."""

from __future__ import annotations

import psycopg
import pytest
import redis

from servicematrix.info import ServerInfo

USE_SERVERS = """
import os, pytest
from sqlalchemy import text

@pytest.mark.parametrize("n", range(4))
def test_own_database(sync_db_session, sync_redis, pg_server, redis_server, n):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    assert pg_server.database.endswith("_" + worker)
    assert redis_server.database == int(worker[2:]) + 2
    assert pg_server.backend == redis_server.backend == "external"
    assert sync_redis.dbsize() == 0
    sync_redis.set("mine", worker)
    name = sync_db_session.execute(text("SELECT current_database()")).scalar()
    assert name == pg_server.database
"""


def databases(pg: ServerInfo) -> set[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    return {r[0] for r in rows}


def test_workers_get_own_database_and_index_and_leave_others_alone(
    inner: pytest.Pytester, servers: tuple[ServerInfo, ServerInfo]
) -> None:
    pg, redis_info = servers
    before = databases(pg)
    with redis.Redis.from_url(redis_info.url(), db=0) as other:
        other.set("not-ours", "keep")
    inner.makepyfile(USE_SERVERS)
    redis_url = redis_info.url().rsplit("/", 1)[0] + "/2"
    result = inner.runpytest(
        "-n", "2", f"--servicematrix-pg-url={pg.url()}", f"--servicematrix-redis-url={redis_url}"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["gw0: PostgreSQL * (external) *:***@*/sm_*_gw0;*"])
    assert databases(pg) == before
    with redis.Redis.from_url(redis_info.url(), db=0) as other:
        assert other.get("not-ours") == b"keep"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (
            "--servicematrix-pg-url=postgresql://postgres:wrong@127.0.0.1:{pg_port}/postgres",
            "*cannot use PostgreSQL at postgresql://postgres:***@127.0.0.1:*password*",
        ),
        (
            "--servicematrix-redis-url=redis://127.0.0.1:{closed}/0",
            "*cannot use Redis at redis://127.0.0.1:*check --servicematrix-redis-url*",
        ),
    ],
)
def test_bad_external_urls_fail_in_one_line(
    inner: pytest.Pytester,
    servers: tuple[ServerInfo, ServerInfo],
    option: str,
    expected: str,
) -> None:
    pg, redis_info = servers
    inner.makepyfile("def test_a(pg_server, redis_server):\n    pass\n")
    urls = {"--servicematrix-pg-url": pg.url(), "--servicematrix-redis-url": redis_info.url()}
    name, _, value = option.partition("=")
    urls[name] = value.format(pg_port=pg.port, closed=1)
    result = inner.runpytest(*(f"{k}={v}" for k, v in urls.items()))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "wrong" not in result.stdout.str() + result.stderr.str()
