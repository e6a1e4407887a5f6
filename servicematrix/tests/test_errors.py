"""Asked-for servers that cannot be had: one line, the fix, a non-zero exit, no hang."""

from __future__ import annotations

import pytest


def test_unknown_version_is_a_usage_error_naming_the_fix(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_a(pg_server):\n    pass\n")
    result = inner.runpytest("--servicematrix-backend=local", "--servicematrix-pg=9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: servicematrix: local backend: no PostgreSQL 9 binaries (*; searched *): "
            "install PostgreSQL 9, set servicematrix_pg to a version this machine has, or "
            "install an extra that ships one: servicematrix?pg16 (16), pg18 (18)?"
        ]
    )


def test_bad_value_is_a_usage_error(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--servicematrix-redis=keydb")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: servicematrix: --servicematrix-redis='keydb' is not valid*"]
    )


def test_external_without_urls_says_which_is_missing(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_a(redis_server):\n    pass\n")
    result = inner.runpytest("--servicematrix-backend=external")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*external backend: the tests use Redis, which needs a URL: set --servicematrix-redis-*"]
    )


def test_runs_without_server_fixtures_need_nothing(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_a():\n    pass\n")
    inner.runpytest().assert_outcomes(passed=1)


def test_docker_without_engine_names_the_fix(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{inner.path / 'no-engine.sock'}")
    inner.makepyfile("def test_a(pg_server):\n    pass\n")
    result = inner.runpytest("--servicematrix-backend=docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: servicematrix: docker backend: no Docker engine answers (cannot connect to "
            "unix://*no-engine.sock: *): start one (`docker info` should answer) or set "
            "servicematrix_backend=local"
        ]
    )


def test_under_xdist_the_error_comes_once_before_any_worker_runs_a_test(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('n', range(6))\n"
        "def test_a(pg_server, n):\n    pass\n"
    )
    result = inner.runpytest("-n", "2", "--servicematrix-backend=local", "--servicematrix-pg=9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert errors[0].startswith("ERROR: servicematrix: local backend: no PostgreSQL 9 binaries")
    assert "passed" not in result.stdout.str()
    assert "failed" not in result.stdout.str()
