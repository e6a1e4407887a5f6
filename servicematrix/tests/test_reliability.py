"""Reliability under abuse: pytest SIGKILLed at random moments, and two runs at once.

Slow, so marked ``reliability``: the plugin's ``tests`` session leaves them out and the
``reliability`` session runs them one at a time (``-n 0``). Each records its figures with
``record_property``; the reliability report reads them back from the JUnit XML.

A run's id begins with its controller's pid in hex, so everything a killed run started
is found without its output: its data dirs (named after the id), its containers
(labelled with it), and the processes working in its project folder or its data dirs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from servicematrix.backends.docker import DockerBackend
from servicematrix.config import Config
from servicematrix.processes import data_root, poll, proc_stat

from .support import PG, REDIS

pytestmark = pytest.mark.reliability

SUITE = Path(__file__).parent / "projects" / "reliability_suite"
BACKENDS = ("local", "docker")
KILLS = 10
SEED = 2026
# How long the suite runs, about: kills land anywhere from collection to the last test.
SUITE_SECONDS = {"local": 4.0, "docker": 6.0}
CLEANUP_SECONDS = 15.0
RUN_SECONDS = 300.0
SERVERS = {"postgres", "redis-server", "valkey-server"}
Record = dict[str, Any]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each backend that starts servers of its own; docker skips without an engine."""
    for name in list(os.environ):
        if name.startswith(("SERVICEMATRIX_", "PYTEST_XDIST_")):
            monkeypatch.delenv(name)
    name = str(request.param)
    if name == "docker":
        reason = DockerBackend.unavailable(Config(backend="docker"))
        if reason:
            if os.environ.get("CI"):
                pytest.fail(f"docker backend unavailable under CI: {reason}")
            pytest.skip(reason)
    return name


def start_run(backend: str, where: Path, records: Path, name: str, workers: str) -> Any:
    shutil.copytree(SUITE, where)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers]
    argv += [f"--servicematrix-backend={backend}", f"--servicematrix-pg={PG}"]
    argv += [f"--servicematrix-redis={REDIS}", "--rootdir", str(where)]
    env = {**os.environ, "RECORD_DIR": str(records), "RUN_NAME": name}
    log = (where / "pytest.log").open("wb")
    with log:
        return subprocess.Popen(argv, cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT)


def pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def in_folder(pid: int, folder: Path) -> bool:
    with suppress(OSError):
        return os.readlink(f"/proc/{pid}/cwd").startswith(str(folder))
    return False


def of_run(pid: int, prefix: str, project: Path) -> bool:
    """Whether ``pid`` works for the run: pytest and servers start in its project folder,
    and the servers then move into data dirs named after its id. A process whose folder
    cannot be read counts as the run's if it is a server: better a false alarm than a
    leftover missed."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except PermissionError:
        stat = proc_stat(pid)
        return stat is not None and stat.name in SERVERS
    except OSError:
        return False
    return cwd.startswith(str(project)) or f"servicematrix-{prefix}" in cwd


def run_containers(prefix: str) -> list[str]:
    import docker

    with closing(docker.from_env()) as client:
        # Sparse: a container removed meanwhile is no error.
        label: dict[str, str | list[str] | bool] = {"label": "io.servicematrix.run"}
        found = client.containers.list(all=True, sparse=True, filters=label)
        runs = [(c.short_id, c.attrs.get("Labels") or {}) for c in found]
        return [cid for cid, labels in runs if labels["io.servicematrix.run"].startswith(prefix)]


def leftovers(prefix: str, before: set[int], project: Path, backend: str) -> list[str]:
    """What of the run whose id starts with ``prefix`` still exists."""
    roots = {data_root(), Path(tempfile.gettempdir())}
    found = [str(p) for root in roots for p in root.glob(f"servicematrix-{prefix}*")]
    for pid in pids() - before:
        stat = proc_stat(pid)
        if stat and stat.state != "Z" and of_run(pid, prefix, project):
            found.append(f"{stat.name} {pid}")
    if backend == "docker":
        found += [f"container {c}" for c in run_containers(prefix)]
    return found


def moment(backend: str, kill: int) -> float:
    """The seeded moment, in seconds after pytest starts, of kill number ``kill``."""
    draws = random.Random(f"{SEED}-{backend}")
    return [draws.uniform(0.2, SUITE_SECONDS[backend]) for _ in range(KILLS)][kill]


@pytest.mark.parametrize("kill", range(KILLS))
def test_sigkill_at_a_random_moment_leaves_nothing(
    backend: str, kill: int, tmp_path: Path, record_property: Any
) -> None:
    workers = "2" if kill % 2 else "0"
    at = moment(backend, kill)
    records, project = tmp_path / "records", tmp_path / "project"
    records.mkdir()
    before = pids()
    proc = start_run(backend, project, records, "killed", workers)
    started = time.monotonic()
    try:
        finished = bool(poll(lambda: proc.poll() is not None, at, 0.01))
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        killed = time.monotonic()
        prefix = f"{proc.pid:x}"
        gone = poll(lambda: not leftovers(prefix, before, project, backend), CLEANUP_SECONDS, 0.05)
        clean = time.monotonic() - killed
        record_property("workers", workers)
        record_property("killed_after_s", f"{killed - started:.2f}")
        record_property("servers_were_up", str(any(records.iterdir())))
        record_property("suite_had_ended", str(finished))
        record_property("clean_after_s", f"{clean:.2f}")
        assert gone, leftovers(prefix, before, project, backend)
    finally:
        # Whatever of the run's pytest still runs goes; its reapers are left to finish their
        # work (killing them would leave behind what they were about to remove).
        for pid in pids() - before:
            if in_folder(pid, project) and not is_reaper(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        poll(lambda: not any(is_reaper(p) for p in pids() - before), CLEANUP_SECONDS, 0.05)


def is_reaper(pid: int) -> bool:
    with suppress(OSError):
        return b"servicematrix.reaper" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def read(records: Path) -> dict[str, list[Record]]:
    """Each run's worker records, by run name (the files are RUN-WORKER.json)."""
    runs: dict[str, list[Record]] = {}
    for path in sorted(records.glob("*.json")):
        runs.setdefault(path.name.split("-")[0], []).append(json.loads(path.read_text()))
    return runs


def test_two_runs_at_once_share_nothing(backend: str, tmp_path: Path, record_property: Any) -> None:
    records = tmp_path / "records"
    records.mkdir()
    runs = {
        name: start_run(backend, tmp_path / name, records, name, "2") for name in ("one", "two")
    }
    try:
        codes = {name: proc.wait(timeout=RUN_SECONDS) for name, proc in runs.items()}
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
    logs = {name: (tmp_path / name / "pytest.log").read_text() for name in runs}
    assert codes == {"one": 0, "two": 0}, logs
    seen = read(records)
    assert sorted(seen) == ["one", "two"]
    assert [len(seen[name]) for name in ("one", "two")] == [2, 2], seen  # two workers each
    shared = []
    for kind in ("pg", "redis"):
        ours, theirs = ({tuple(e[kind]) for e in seen[name]} for name in ("one", "two"))
        shared += sorted(ours & theirs)
        # Within a run, each worker has its own server too.
        assert len(ours) == len(theirs) == 2
    # At the end, each worker's PostgreSQL held its own run's mark and nobody else's.
    strangers = [
        e["marks"] for name, entries in seen.items() for e in entries if e["marks"] != [name]
    ]
    record_property("things_shared", str(len(shared)))
    assert shared == []
    assert strangers == []
