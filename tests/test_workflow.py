"""The GitHub matrix is the noxfile's: its listing command yields exactly our sessions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def jobs() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return dict(workflow["jobs"])


def noxfile_sessions() -> list[str]:
    out = subprocess.run(
        ["nox", "-l", "--json", "-s", "integration"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [s["session"] for s in json.loads(out.stdout)]


def test_matrix_job_lists_exactly_the_noxfile_integration_sessions(tmp_path: Path) -> None:
    step = next(s for s in jobs()["matrix"]["steps"] if s.get("id") == "list")
    output = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output)}
    subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=ROOT, env=env, check=True)
    name, _, value = output.read_text().strip().partition("=")
    assert name == "sessions"
    listed = [entry["session"] for entry in json.loads(value)]
    expected = noxfile_sessions()
    assert listed == expected
    assert len(expected) == 25


def test_integration_job_runs_each_listed_session_by_name() -> None:
    job = jobs()["integration"]
    assert job["strategy"]["matrix"] == {
        "include": "${{ fromJSON(needs.matrix.outputs.sessions) }}"
    }
    runs = [s for s in job["steps"] if "run" in s and "nox -s" in s["run"]]
    assert [s["run"] for s in runs] == ['nox -s "$SESSION"']
    assert runs[0]["env"] == {"SESSION": "${{ matrix.session }}"}


def test_every_job_only_calls_nox_or_installs_it() -> None:
    allowed = ("nox ", "python -m pip install nox", 'echo "sessions=$(nox -l --json')
    commands = [(n, s["run"]) for n, job in jobs().items() for s in job["steps"] if "run" in s]
    assert commands
    assert [(n, c) for n, c in commands if not c.startswith(allowed)] == []


def run_broken(tmp_path: Path, old: str, new: str, *jobs: str) -> subprocess.CompletedProcess[str]:
    """ci/run-workflow.py on a copy of the workflow with ``old`` replaced by ``new``."""
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(old, new, 1))
    return subprocess.run(
        [sys.executable, str(ROOT / "ci" / "run-workflow.py"), "--workflow", str(broken), *jobs],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_runner_names_the_job_and_step_of_a_session_that_does_not_exist(tmp_path: Path) -> None:
    done = run_broken(tmp_path, "nox -s lint workflows", "nox -s lint-that-does-not-exist", "lint")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "run-workflow: job lint (lint and workflow checks), step 4 "
        "(nox -s lint-that-does-not-exist): `nox -s lint-that-does-not-exist` exited with 3"
    )


def test_runner_stops_on_a_service_whose_health_check_never_passes(tmp_path: Path) -> None:
    engine = shutil.which("docker") and subprocess.run(
        ["docker", "info"], capture_output=True, check=False
    )
    if not engine or engine.returncode:
        if os.environ.get("CI"):
            pytest.fail("no Docker engine under CI")
        pytest.skip("needs a Docker engine for the service containers")
    done = run_broken(tmp_path, '--health-cmd "redis-cli ping"', '--health-cmd "false"', "external")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("run-workflow: job external: service redis is unhealthy after ")
    )
