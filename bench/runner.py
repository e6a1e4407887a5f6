"""The shared runner: one pytest run, timed from outside and from inside.

``run_pytest`` starts ``python -m pytest`` with the ``timing`` plugin of bench/workload
and returns a :class:`Run`: the wall time, the time to the first fixture and to the first
test's body, the median gap between consecutive test ends (the cost of a test once the
run is under way), and two peaks of PSS sampled from /proc every 0.1 s: the servers the
run started (server processes, and every process inside a container, e.g. a holder's
sleep) and Docker's own per-container processes outside them (containerd shims and
userland proxies). A run that fails, or that leaves a container behind, stops the
benchmark with its output's tail.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from common import BENCH

WORKLOAD = BENCH / "workload"
PROC = Path("/proc")
SERVERS = {"postgres", "redis-server", "valkey-server"}
RUNTIME = ("containerd-shim", "docker-proxy")
SAMPLE_SECONDS = 0.1
LEFTOVER_SECONDS = 10.0


@dataclass
class Run:
    wall: float
    first_fixture: float
    first_test: float
    per_test_ms: float
    pss_mib: float
    runtime_mib: float
    load: float


def pids() -> set[int]:
    return {int(p.name) for p in PROC.iterdir() if p.name.isdigit()}


def name_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's name and parent pid from /proc/PID/stat; None once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    head, _, tail = stat.rpartition(")")
    return head.partition("(")[2], int(tail.split()[1])


def pss_kib(pid: int) -> int:
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)


class PssSampler:
    """``with PssSampler() as s: ...``, then ``s.peak_kib`` (servers) and
    ``s.runtime_peak_kib`` (Docker's processes outside the containers)."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self.runtime_peak_kib = 0
        self._before = pids()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _kind(self, pid: int) -> str | None:
        """ "server", "runtime" or None (not counted)."""
        own = name_and_parent(pid)
        if own is None:
            return None
        if own[0].startswith(RUNTIME):
            return "runtime"
        parent = name_and_parent(own[1])
        in_container = parent is not None and parent[0].startswith("containerd-shim")
        return "server" if own[0] in SERVERS or in_container else None

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            totals = {"server": 0, "runtime": 0}
            for pid in pids() - self._before:
                kind = self._kind(pid)
                if kind:
                    totals[kind] += pss_kib(pid)
            self.peak_kib = max(self.peak_kib, totals["server"])
            self.runtime_peak_kib = max(self.runtime_peak_kib, totals["runtime"])

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


def containers() -> set[str]:
    if shutil.which("docker") is None:
        return set()
    out = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=False)
    return set(out.stdout.split())


def run_pytest(
    python: Path,
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    as_nobody: bool = False,
    what: str = "pytest",
) -> Run:
    """``python -m pytest -q -p timing ARGS`` in ``cwd``, with ``env`` added."""
    timing = Path(tempfile.mkdtemp(prefix="servicematrix-timing-"))
    timing.chmod(0o777)
    path = os.pathsep.join(filter(None, [str(WORKLOAD), env.get("PYTHONPATH")]))
    full = {**os.environ, **env, "BENCH_TIMING_DIR": str(timing), "PYTHONPATH": path}
    # pytest's own temporary folders go inside ours, removed with it.
    command = [str(python), "-m", "pytest", "-q", "-p", "timing", f"--basetemp={timing / 'tmp'}"]
    command += args
    if as_nobody:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        full["HOME"] = str(timing)
    before = containers()
    load = os.getloadavg()[0]
    try:
        with PssSampler() as sampler:
            started = time.time()
            done = subprocess.run(
                command, cwd=cwd, env=full, capture_output=True, text=True, check=False
            )
            wall = time.time() - started
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise SystemExit(f"bench: {what} failed (exit {done.returncode}):\n{tail}")
        # Some tools remove their containers as they exit, not before: give them a moment.
        deadline = time.monotonic() + LEFTOVER_SECONDS
        while (left := containers() - before) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            raise SystemExit(f"bench: {what} left containers behind: {sorted(left)}")
        seen = [json.loads(p.read_text()) for p in timing.glob("*.json")]
    finally:
        shutil.rmtree(timing, ignore_errors=True)
    # The xdist controller reports test ends too, but runs no test: it has no first test.
    seen = [s for s in seen if s["first_test"] is not None]
    gaps = [b - a for s in seen for a, b in zip(s["ends"][1:-1], s["ends"][2:], strict=False)]
    return Run(
        wall,
        min(s["first_fixture"] for s in seen) - started,
        min(s["first_test"] for s in seen) - started,
        statistics.median(gaps) * 1000 if gaps else 0.0,
        sampler.peak_kib / 1024,
        sampler.runtime_peak_kib / 1024,
        load,
    )
