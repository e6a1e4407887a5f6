"""Two pytest runs at once on one machine: both pass, and neither touches the other's servers.

Both runs load the ``reliability_probe`` plugin, which records per worker the servers'
ports and identities, whether the marks it left on them are intact, and (local backend)
which processes held connections to them. The two runs must share nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RUN_TIMEOUT = 1800.0


@dataclass
class RunRecord:
    """One of the two runs: how it ended and what served its workers."""

    backend: str
    label: str
    exit_code: int | None
    seconds: float
    workers: list[dict[str, Any]] = field(default_factory=list)
    tail: str = ""

    def values(self, key: str) -> set[Any]:
        found = set()
        for w in self.workers:
            value = w.get(key)
            found |= set(value) if isinstance(value, list) else {value}
        return found - {None}


def probe_env(out: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RELIABILITY_PROBE_OUT": str(out)}


def two_at_once(backend: str, args: list[str], cwd: Path, out: Path) -> list[RunRecord]:
    """Start two runs of ``pytest ARGS`` together and wait for both."""
    argv = [sys.executable, "-m", "pytest", "-p", "reliability_probe", *args]
    started = time.monotonic()
    procs = []
    for label in ("A", "B"):
        (out / label).mkdir(parents=True)
        log = (out / f"{label}.log").open("wb")
        env = probe_env(out / label)
        procs.append((label, log, subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log)))
    records = []
    for label, log, proc in procs:
        try:
            code: int | None = proc.wait(
                timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - started))
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        log.close()
        seconds = time.monotonic() - started
        workers = [json.loads(p.read_text()) for p in sorted((out / label).glob("*.json"))]
        lines = (out / f"{label}.log").read_text(errors="replace").strip().splitlines()
        records.append(RunRecord(backend, label, code, seconds, workers, "\n".join(lines[-3:])))
    return records


def shared(a: RunRecord, b: RunRecord) -> list[str]:
    """What the two runs have in common, or where either saw the other; empty if nothing."""
    problems = []
    for key in ("pg_port", "redis_port", "pg_id", "redis_id", "pg_pid", "redis_pid", "containers"):
        common = a.values(key) & b.values(key)
        if common:
            problems.append(f"shared {key}: {sorted(map(str, common))}")
    for run in (a, b):
        if not run.workers:
            problems.append(f"run {run.label} recorded no workers")
        for w in run.workers:
            if not w["marks_intact"]:
                problems.append(f"run {run.label} {w['worker']}: its marks were changed")
            foreign = set(w["connection_pids"] or []) - {w["pid"]}
            if foreign:
                problems.append(f"run {run.label} {w['worker']}: connections from pids {foreign}")
    return problems
