"""A failing test's data, kept on request (keep_failed): opened after the run from the URLs
its failure report printed, then removed by ``python -m servicematrix kept``.

Each failing test of the inner project (projects/kept_failures) names its rows and keys
by its own node id, so what is found behind a URL says whose data it is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from servicematrix.info import ServerInfo

from .conftest import run_ids_alive
from .support import INNER_INI, PG

PROJECT = Path(__file__).parent / "projects" / "kept_failures"
_SECTION = re.compile(
    r"this test's data is kept as (\S+); open it with:\n"
    r"  psql '([^']+)'\n"
    r"  redis-cli -u '([^']+)'\n"
    r"remove it with: python -m servicematrix kept --remove \1"
)
FAILING = {
    f"test_kept.py::test_fails_after_{what}[{driver}]"
    for what in ("writing", "committing")
    for driver in ("sync", "async")
}


@dataclass
class Kept:
    name: str
    pg: str
    redis: str


class Project:
    """The inner project in a pytester directory, its kept data under its own cache."""

    def __init__(self, pytester: pytest.Pytester, options: list[str]) -> None:
        shutil.copytree(PROJECT, pytester.path, dirs_exist_ok=True)
        pytester.makeini(INNER_INI)
        self.pytester, self.options = pytester, options
        self.cache = pytester.path / "cache"

    def run(self, *extra: str) -> pytest.RunResult:
        result = self.pytester.runpytest_subprocess(
            "-n", "2", f"--servicematrix-cache-dir={self.cache}", *self.options, *extra
        )
        result.assert_outcomes(failed=len(FAILING), passed=2)
        return result

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m servicematrix kept``, as a user runs it after the run."""
        argv = [sys.executable, "-m", "servicematrix", "kept", *args]
        argv.append(f"--servicematrix-cache-dir={self.cache}")
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def printed(result: pytest.RunResult) -> list[Kept]:
    """What the failure reports say was kept, and where."""
    return [Kept(*match) for match in _SECTION.findall(str(result.stdout))]


def opened(kept: Kept) -> dict[str, Any]:
    """What psql and redis-cli would find behind ``kept``'s URLs."""
    with psycopg.connect(kept.pg, connect_timeout=5) as conn:
        authors = conn.execute("SELECT id, name FROM authors").fetchall()
        books = conn.execute("SELECT author_id, title, shout FROM books").fetchall()
        kinds = {name for (name,) in conn.execute("SELECT name FROM kinds")}
    with redis.Redis.from_url(kept.redis, decode_responses=True) as client:
        keys = {"test": client.get("test"), "steps": client.lrange("steps", 0, -1)}
        ttl = client.ttl("test")
    return {"authors": authors, "books": books, "kinds": kinds, "keys": keys, "ttl": ttl}


def gone(kept: Kept) -> bool:
    """True once neither URL opens anything: the servers, or the databases, are gone."""
    try:
        with psycopg.connect(kept.pg, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return False
    except psycopg.OperationalError:
        pass
    try:
        with redis.Redis.from_url(kept.redis, socket_connect_timeout=2) as client:
            return bool(client.dbsize() == 0)
    except (redis.ConnectionError, redis.TimeoutError):  # a removed container: no answer
        return True


def run_id(kept: list[Kept]) -> str:
    return kept[0].name.split("_")[2]


def check_kept_and_removed(project: Project) -> list[Kept]:
    """One run with keep_failed: each failing test's data behind its URLs after the run,
    listed by the command, and gone after it removes everything."""
    try:
        result = project.run("--servicematrix-keep-failed=yes")
        kept = printed(result)
        check_kept(project, result, kept)
    finally:
        # Whatever failed above, the servers kept for it must not outlive this test.
        project.command("--remove", "all")
    return kept


def check_kept(project: Project, result: pytest.RunResult, kept: list[Kept]) -> None:
    result.stdout.fnmatch_lines(["kept the data of 4 failed test(s): *"])
    seen = {}
    for entry in kept:
        found = opened(entry)
        ((author_id, test),) = found["authors"]
        seen[test] = entry
        assert found["books"] == [(author_id, test, test.upper())]
        # The rolled-back test's last row was never committed: kept all the same.
        assert (test in found["kinds"]) == ("after_writing" in test)
        assert found["keys"] == {"test": test, "steps": ["wrote", "failed"]}
        assert 0 < found["ttl"] <= 600
    assert set(seen) == FAILING

    listed = project.command()
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for test, entry in seen.items():
        assert f"{entry.name}  {test}" in listed.stdout
        assert f"psql '{entry.pg}'" in listed.stdout

    wrong = project.command("--remove", "sm_failed_none")
    assert wrong.returncode == 1
    assert "nothing is kept as sm_failed_none" in wrong.stdout
    assert not any(gone(entry) for entry in kept), "a wrong name must remove nothing"

    removed = project.command("--remove", "all")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert sorted(removed.stdout.split()) == sorted(
        ["removed"] * len(kept) + [entry.name for entry in kept]
    )
    assert all(gone(entry) for entry in kept)
    assert "nothing is kept" in project.command().stdout


def test_local_keeps_failed_tests_data_until_the_command_removes_it(
    clean: pytest.Pytester,
) -> None:
    project = Project(clean, ["--servicematrix-backend=local", f"--servicematrix-pg={PG}"])
    kept = check_kept_and_removed(project)
    assert run_ids_alive(run_id(kept)) == []


def test_nothing_is_kept_by_default(clean: pytest.Pytester) -> None:
    project = Project(clean, ["--servicematrix-backend=local", f"--servicematrix-pg={PG}"])
    result = project.run()
    assert printed(result) == []
    assert "kept the data" not in str(result.stdout)
    assert not (project.cache / "kept").exists()
    run = re.search(r" run=(\w+)", str(result.stdout))
    assert run is not None
    assert run_ids_alive(run.group(1)) == []


def test_docker_keeps_its_containers_for_the_kept_data(clean: pytest.Pytester, engine: Any) -> None:
    project = Project(clean, ["--servicematrix-backend=docker", f"--servicematrix-pg={PG}"])
    kept = check_kept_and_removed(project)
    label = f"io.servicematrix.run={run_id(kept)}"
    assert engine.containers.list(all=True, filters={"label": label}) == []


def test_external_keeps_databases_on_the_server_and_drops_them_on_removal(
    clean: pytest.Pytester, servers: tuple[ServerInfo, ServerInfo]
) -> None:
    pg, redis_info = servers
    project = Project(
        clean,
        [f"--servicematrix-pg-url={pg.url()}", f"--servicematrix-redis-url={redis_info.url()}"],
    )
    kept = check_kept_and_removed(project)
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"%{run_id(kept)}%",)
        ).fetchall()
    assert left == [], "the workers' databases, their blanks and the kept ones are dropped"
