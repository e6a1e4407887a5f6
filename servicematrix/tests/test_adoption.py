"""Small projects of the shapes that adopt the plugin, each run as its own pytest.

They live as files under projects/: a PostgreSQL-only SQLModel service without
pytest-asyncio, a Redis-only asyncio library on pytest-asyncio's default loop per
test, and an app that reads its servers from the environment when it is imported.
Each names, in its ini, a version of the other server that exists nowhere. One more,
with its own testcontainers 3, gets a virtualenv of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[1]
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


def new_venv(path: Path, *requirements: str) -> Path:
    """A virtualenv at ``path`` with ``requirements``; its python."""
    python = str(path / "bin" / "python")
    install: list[str]
    if shutil.which("uv"):
        subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(path)], check=True)
        install = ["uv", "pip", "install", "-q", "--python", python]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        install = [python, "-m", "pip", "install", "-q"]
    subprocess.run([*install, *requirements], check=True, timeout=600)
    return Path(python)


@pytest.mark.adoption
def test_own_old_testcontainers_passes_docker_over(clean: pytest.Pytester) -> None:
    python = new_venv(
        clean.path / "venv",
        f"servicematrix[redis,redis6] @ {PLUGIN.as_uri()}",
        "testcontainers==3.7.1",
    )
    shutil.copytree(PROJECTS / "old_testcontainers", clean.path, dirs_exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    done = subprocess.run(
        [python, "-m", "pytest", "-n", "2", "-rA"],
        cwd=clean.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert "backend local (auto: not docker: testcontainers 3.7.1 is installed" in done.stdout
