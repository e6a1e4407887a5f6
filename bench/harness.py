"""What every scenario shares: samples, one pytest run timed from outside and inside, and
one JSON file of results per scenario.

A scenario (``bench/<name>.py``) measures, then calls :func:`save` with a :class:`Result`
of tables, targets (met or missed, and why) and plot data, which ``bench/report.py``
renders: no figure is typed by hand. :func:`run_pytest` times one pytest run with the
``timing`` plugin of bench/workload; a run that fails, or leaves a container behind,
stops the scenario with its output's tail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from servicematrix.processes import poll, proc_stat

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
WORKLOAD = BENCH / "workload"
STARTED = time.perf_counter()
PROC = Path("/proc")
SERVERS = {"postgres", "redis-server", "valkey-server"}
RUNTIME = ("containerd-shim", "docker-proxy")


@dataclass(frozen=True)
class Stat:
    """Samples of one measurement, in one unit."""

    samples: list[float]
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def cells(self, digits: int = 3) -> list[str]:
        """Median, min, max and n as table cells."""
        values = (self.median, self.min, self.max)
        return [*(f"{v:.{digits}f} {self.unit}" for v in values), str(len(self.samples))]

    def spread(self, digits: int = 2) -> str:
        """One cell: the median, then min-max in brackets."""
        return f"{self.median:.{digits}f} {self.unit} ({self.min:.{digits}f}-{self.max:.{digits}f})"


STAT_COLUMNS = ["median", "min", "max", "n"]


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Target:
    """A target from an issue: what, the bound, what was measured, met or not, and why."""

    what: str
    target: str
    measured: str
    met: bool
    why: str = ""


@dataclass
class Plot:
    """``kind`` is "bar" (x are labels; a point [x, y, low, high] gets an error bar) or
    "line" (x numbers); ``series`` maps a label to its points."""

    file: str
    title: str
    xlabel: str
    ylabel: str
    kind: str
    series: dict[str, list[list[Any]]]
    log_y: bool = False


@dataclass
class Result:
    """One scenario's results; save() fills in where it ran and the seconds it took."""

    name: str
    title: str
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    date: str = ""
    wall_seconds: float = 0.0


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A scenario's argument parser, described by its docstring's first paragraph."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    info = (PROC / "cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "")
    kib = int((PROC / "meminfo").read_text().split()[1])
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True, cwd=BENCH, check=False)
    return {
        "os": platform.platform(),
        "cpu": cpu or platform.processor(),
        "cores": str(os.cpu_count()),
        "memory": f"{kib / 1024**2:.0f} GiB",
        "python": sys.version.split()[0],
        "commit": commit.stdout.strip() or "unknown",
    }


def save(result: Result) -> Path:
    """Write ``bench/results/<name>.json`` with the command, the machine and the date."""
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    result.command = result.command or shlex.join(["python", str(script), *sys.argv[1:]])
    result.machine = machine()
    result.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result.wall_seconds = result.wall_seconds or round(time.perf_counter() - STARTED, 1)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{result.name}.json"
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


@dataclass
class Run:
    """A pytest run: seconds from its start to its end, its first fixture and its first test's
    body; the median gap between test ends (a test's cost once under way); the peak PSS of
    the servers it started (server processes, every process in a container) and of Docker's
    own processes beside them (containerd shims, userland proxies), sampled every 0.1 s."""

    wall: float
    first_fixture: float
    first_test: float
    per_test_ms: float
    pss_mib: float
    runtime_mib: float
    load: float


def pss_kib(pid: int) -> int:
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)


def pids() -> set[int]:
    return {int(p.name) for p in PROC.iterdir() if p.name.isdigit()}


class PssSampler:
    """``with PssSampler() as s: ...``, then ``s.peaks["server"]`` and ``["runtime"]`` in
    KiB, over the processes started since it was made."""

    def __init__(self) -> None:
        self.peaks = {"server": 0, "runtime": 0}
        self._before = pids()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _kind(pid: int) -> str | None:
        own = proc_stat(pid)
        if own is None:
            return None
        if own.name.startswith(RUNTIME):
            return "runtime"
        parent = proc_stat(own.ppid)
        in_container = parent is not None and parent.name.startswith("containerd-shim")
        return "server" if own.name in SERVERS or in_container else None

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            totals = dict.fromkeys(self.peaks, 0)
            for pid in pids() - self._before:
                if kind := self._kind(pid):
                    totals[kind] += pss_kib(pid)
            self.peaks = {k: max(v, totals[k]) for k, v in self.peaks.items()}

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
    python: Path, args: list[str], cwd: Path, env: dict[str, str], *, as_nobody: bool = False
) -> Run:
    """``python -m pytest -q -p timing ARGS`` in ``cwd``, with ``env`` added."""
    timing = Path(tempfile.mkdtemp(prefix="servicematrix-timing-"))
    timing.chmod(0o777)
    path = os.pathsep.join(filter(None, [str(WORKLOAD), env.get("PYTHONPATH")]))
    full = {**os.environ, **env, "BENCH_TIMING_DIR": str(timing), "PYTHONPATH": path}
    # pytest's own temporary folders go inside ours, removed with it.
    command = [str(python), "-m", "pytest", "-q", "-p", "timing", f"--basetemp={timing / 't'}"]
    command += args
    if as_nobody:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        full["HOME"] = str(timing)
    what = shlex.join(args)
    before, load = containers(), os.getloadavg()[0]
    try:
        with PssSampler() as sampler:
            started = time.time()
            done = subprocess.run(command, cwd=cwd, env=full, capture_output=True, check=False)
            wall = time.time() - started
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).decode().splitlines()[-15:])
            raise SystemExit(f"bench: pytest {what} failed (exit {done.returncode}):\n{tail}")
        # Some tools remove their containers as they exit, not before: give them 10 s.
        poll(lambda: not containers() - before, 10, 0.2)
        if left := containers() - before:
            raise SystemExit(f"bench: pytest {what} left containers behind: {sorted(left)}")
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
        sampler.peaks["server"] / 1024,
        sampler.peaks["runtime"] / 1024,
        load,
    )
