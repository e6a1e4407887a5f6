"""The GitHub matrix is the noxfile's: its listing command yields exactly our sessions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

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
