"""Warm servers (warm): left running by one run, emptied and reused by the next, never by
two runs at once, stopped when idle, and never under CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servicematrix.processes import poll

from .conftest import run_ids_alive
from .support import INNER_INI, PG

PROJECTS = Path(__file__).parent / "projects"
LOCAL = ["--servicematrix-backend=local", f"--servicematrix-pg={PG}"]


class Project:
    """An inner project whose runs share one cache, hence one pool of warm servers."""

    def __init__(self, pytester: pytest.Pytester, name: str, options: list[str]) -> None:
        shutil.copytree(PROJECTS / name, pytester.path, dirs_exist_ok=True)
        pytester.makeini(INNER_INI)
        self.pytester, self.cache = pytester, pytester.path / "cache"
        self.options = [f"--servicematrix-cache-dir={self.cache}", *options]
        self.runs = 0

    def start(self, *extra: str, env: dict[str, str] | None = None) -> Started:
        """A run, started; ``finish`` waits for it."""
        self.runs += 1
        report = self.pytester.path / f"servers-{self.runs}.json"
        argv = [sys.executable, "-m", "pytest", f"--servicematrix-report={report}"]
        proc = subprocess.Popen(
            [*argv, *self.options, *extra],
            cwd=self.pytester.path,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return Started(proc, report)

    def run(self, *extra: str, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """One run; each worker's report (its servers, and whether they were warm)."""
        return self.start(*extra, env=env).finish()

    def command(self, *args: str) -> str:
        argv = [sys.executable, "-m", "servicematrix", "warm", *args]
        argv.append(f"--servicematrix-cache-dir={self.cache}")
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@dataclass
class Started:
    proc: subprocess.Popen[str]
    report: Path

    def finish(self) -> dict[str, dict[str, Any]]:
        output, _ = self.proc.communicate(timeout=300)
        assert self.proc.returncode == 0, output[-4000:]
        return {w["worker"]: w for w in json.loads(self.report.read_text())["workers"]}


def ports(worker: dict[str, Any]) -> list[int]:
    return sorted(server["port"] for server in worker["servers"])


@pytest.fixture
def off_ci(clean: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """Inner runs as on a developer's machine: warm servers are never kept under CI."""
    monkeypatch.delenv("CI", raising=False)
    return clean


@pytest.fixture
def isolation(off_ci: pytest.Pytester) -> Iterator[Project]:
    project = Project(off_ci, "isolation", [*LOCAL, "--servicematrix-warm=yes"])
    yield project
    project.command("--stop")  # whatever failed, nothing of this test stays up


def test_the_next_run_takes_the_servers_emptied(isolation: Project) -> None:
    # The project's setup creates its table and its tests start from empty tables and
    # an empty Redis: a second run passes only on servers emptied of the first's.
    first = isolation.run("-n", "2")
    assert {w["warm"] for w in first.values()} == {"started"}
    second = isolation.run("-n", "2")
    assert {w["warm"] for w in second.values()} == {"reused"}
    assert sorted(map(ports, first.values())) == sorted(map(ports, second.values()))
    listed = isolation.command()
    assert listed.count("stops after 15.0 idle minutes") == 2

    stopped = isolation.command("--stop")
    assert stopped.count("stopped ") == 2
    assert isolation.command() == ""
    (run,) = {w["run"] for w in first.values()}
    assert run_ids_alive(run) == []


def test_two_runs_at_once_never_share_warm_servers(off_ci: pytest.Pytester) -> None:
    project = Project(off_ci, "warm_meeting", [*LOCAL, "--servicematrix-warm=yes"])
    meeting = off_ci.path / "meeting"
    meeting.mkdir()
    places = {"MEETING_DIR": str(meeting)}
    try:
        (seeded,) = project.run(env={**places, "THIS_RUN": "s", "OTHER_RUN": "s"}).values()
        # Each of these two waits, its servers up, until the other's are up too.
        runs = [
            project.start(env={**places, "THIS_RUN": me, "OTHER_RUN": other})
            for me, other in (("a", "b"), ("b", "a"))
        ]
        a, b = (next(iter(run.finish().values())) for run in runs)
    finally:
        project.command("--stop")
    assert ports(a) != ports(b), "two runs at once were given the same servers"
    assert sorted([a["warm"], b["warm"]]) == ["reused", "started"]
    reused = a if a["warm"] == "reused" else b
    assert ports(reused) == ports(seeded)


def test_idle_warm_servers_stop_by_themselves(off_ci: pytest.Pytester) -> None:
    # 0.01 minutes: 0.6 s without a run, and the watcher stops them.
    project = Project(off_ci, "isolation", [*LOCAL, "--servicematrix-warm=0.01"])
    try:
        report = project.run("-n", "0")
        assert poll(lambda: project.command() == "", 60, 0.1), project.command()
    finally:
        project.command("--stop")
    assert run_ids_alive(report["main"]["run"]) == []


def test_nothing_is_kept_warm_under_ci(
    clean: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    project = Project(clean, "isolation", [*LOCAL, "--servicematrix-warm=yes"])
    (worker,) = project.run("-n", "0").values()
    assert worker["warm"] == "warm servers are off under CI"
    assert project.command() == ""
    assert run_ids_alive(worker["run"]) == []


def test_docker_leaves_its_containers_warm(off_ci: pytest.Pytester, engine: Any) -> None:
    project = Project(
        off_ci, "isolation", ["--servicematrix-backend=docker", "--servicematrix-warm=yes"]
    )
    try:
        (first,) = project.run("-n", "0").values()
        (second,) = project.run("-n", "0").values()
        assert (first["warm"], second["warm"]) == ("started", "reused")
        assert ports(first) == ports(second)
        label = f"io.servicematrix.run={first['run']}"
        assert engine.containers.list(filters={"label": label}), "left warm after its run"
    finally:
        project.command("--stop")
    assert engine.containers.list(all=True, filters={"label": label}) == []


def test_warm_servers_holding_the_schema_are_truncated_not_set_up_again(
    off_ci: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project's tests insert rows and expect none: a second run passes only on
    # emptied tables; its setup writes a line per run to SETUP_LOG.
    log = off_ci.path / "setups.log"
    monkeypatch.setenv("SETUP_LOG", str(log))
    project = Project(off_ci, "schema_template", [*LOCAL, "--servicematrix-warm=yes"])
    try:
        (first,) = project.run("-n", "0").values()
        (second,) = project.run("-n", "0").values()
    finally:
        project.command("--stop")
    assert (first["warm"], second["warm"]) == ("started", "reused")
    assert second["schema"]["how"] == "reused"
    assert len(log.read_text().splitlines()) == 1
