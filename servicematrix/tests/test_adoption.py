"""Small projects of the shapes that adopt the plugin, each run as its own pytest.

They live as files under projects/: a PostgreSQL-only SQLModel service without
pytest-asyncio, a Redis-only asyncio library on pytest-asyncio's default loop per
test, and an app that reads its servers from the environment when it is imported.
Each names, in its ini, a version of the other server that exists nowhere.
"""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest

PROJECTS = Path(__file__).parent / "projects"


def asyncio_options() -> list[str]:
    """What a project on this pytest-asyncio sets to keep it quiet (newer ones warn)."""
    major, minor = (int(p) for p in version("pytest-asyncio").split(".")[:2])
    return (
        ["-o", "asyncio_default_fixture_loop_scope=function"] if (major, minor) >= (0, 24) else []
    )


def run_project(clean: pytest.Pytester, name: str, workers: str, *args: str) -> pytest.RunResult:
    shutil.copytree(PROJECTS / name, clean.path, dirs_exist_ok=True)
    report = clean.path / "servers.json"
    return clean.runpytest_subprocess(
        "-n", workers, f"--servicematrix-report={report}", *args, timeout=180
    )


def served(clean: pytest.Pytester) -> set[str]:
    workers = json.loads((clean.path / "servers.json").read_text())["workers"]
    return {s["product"] for w in workers for s in w["servers"]}


@pytest.mark.parametrize("workers", ["0", "2"])
def test_postgres_only_sqlmodel_without_asyncio(clean: pytest.Pytester, workers: str) -> None:
    pytest.importorskip("sqlmodel")
    result = run_project(clean, "postgres_sqlmodel", workers)
    result.assert_outcomes(passed=5)
    assert "[async" not in result.stdout.str()
    assert served(clean) == {"postgresql"}


@pytest.mark.parametrize("workers", ["0", "2"])
def test_redis_only_asyncio_on_a_loop_per_test(clean: pytest.Pytester, workers: str) -> None:
    result = run_project(clean, "redis_asyncio", workers, *asyncio_options())
    result.assert_outcomes(passed=6)
    assert served(clean) == {"redis"}


@pytest.mark.parametrize("workers", ["0", "2"])
def test_app_reading_the_environment_at_import(clean: pytest.Pytester, workers: str) -> None:
    result = run_project(clean, "startup_env", workers, "-p", "no:asyncio")
    result.assert_outcomes(passed=5)
    assert served(clean) == {"postgresql", "redis"}
