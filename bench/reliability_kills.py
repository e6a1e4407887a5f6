"""SIGKILL of pytest at a random moment, and what the run leaves behind.

A run's id is the controller's pid in hex followed by six hex digits, so everything a
killed run started can be found without its output: containers labelled with that id,
data dirs named after it, server processes whose command line or working directory is
inside those dirs. pytest's own processes (xdist workers, reapers) are those working in
the run's directory. Nothing of any other run matches.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLEAN_SECONDS = 15.0
POLL_SECONDS = 0.05
UP_TIMEOUT = 120.0
TESTS = 40
STEP_SECONDS = 0.1
ENDED = "ended before the kill"
RUN_LABEL = "io.servicematrix.run"
SUITE = """
import time

import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range({tests}))
def test_step(sync_engine, sync_redis, n):
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    sync_redis.set("step", n)
    time.sleep({step})
"""
INI = """[pytest]
addopts = -p no:cacheprovider
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""


@dataclass
class Traces:
    """What is left of one run: containers, server processes, data dirs, pytest processes."""

    containers: list[str] = field(default_factory=list)
    servers: list[int] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    pytest: list[int] = field(default_factory=list)

    @property
    def servers_gone(self) -> bool:
        return not (self.containers or self.servers or self.dirs)

    def counts(self) -> str:
        return (
            f"{len(self.dirs)} dirs, {len(self.servers)} server processes, "
            f"{len(self.containers)} containers"
        )

    def describe(self) -> list[str]:
        return [
            *(f"container {c[:12]}" for c in self.containers),
            *(f"server pid {p}" for p in self.servers),
            *(f"dir {d}" for d in self.dirs),
            *(f"pytest pid {p}" for p in self.pytest),
        ]


@dataclass
class Kill:
    """One SIGKILL: when, what was up, how long until clean, what remained."""

    backend: str
    workers: str
    delay: float
    after_up: float
    up_at_kill: str
    seconds_to_clean: float | None
    seconds_to_exit: float | None
    leftovers: list[str]


def make_suite(root: Path) -> Path:
    """A small suite where every test uses both servers; returns its directory."""
    suite = root / "suite"
    suite.mkdir(parents=True)
    (suite / "test_steps.py").write_text(SUITE.format(tests=TESTS, step=STEP_SECONDS))
    (suite / "pytest.ini").write_text(INI)
    return suite


def pytest_argv(backend: str, workers: str, versions: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-n",
        workers,
        f"--servicematrix-backend={backend}",
        *versions,
    ]


def run_pattern(pid: int) -> re.Pattern[str]:
    return re.compile(rf"servicematrix-{pid:x}[0-9a-f]{{6}}-")


def _process_table() -> Iterator[tuple[int, str, str]]:
    """(pid, command line, working directory) of every live, non-zombie process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        yield int(proc.name), cmdline, cwd


def run_dirs(pattern: re.Pattern[str]) -> list[Path]:
    """The run's data dirs, wherever the plugin puts them by default."""
    roots = {Path("/dev/shm"), Path(tempfile.gettempdir())}  # noqa: S108 - where data dirs go
    return [p for r in roots if r.is_dir() for p in r.iterdir() if pattern.match(p.name)]


def find_traces(pid: int, cwd: Path, client: Any) -> Traces:
    """Everything run ``pid`` (started in ``cwd``) left on this host."""
    pattern = run_pattern(pid)
    traces = Traces()
    for other, cmdline, where in _process_table():
        if other == os.getpid():
            continue
        if pattern.search(cmdline) or pattern.search(where + "/"):
            traces.servers.append(other)
        elif where == str(cwd):
            traces.pytest.append(other)
    traces.dirs = run_dirs(pattern)
    if client is not None:
        run = re.compile(rf"{pid:x}[0-9a-f]{{6}}")
        listed = client.containers.list(all=True, sparse=True, filters={"label": RUN_LABEL})
        traces.containers = [
            c.id for c in listed if run.fullmatch((c.attrs.get("Labels") or {}).get(RUN_LABEL, ""))
        ]
    return traces


def remove(traces: Traces, client: Any) -> None:
    """Remove what a run left, so the next one starts clean."""
    for pid in [*traces.pytest, *traces.servers]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for container in traces.containers:
        with suppress(Exception):
            client.api.remove_container(container, force=True, v=True)
    for path in traces.dirs:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def docker_client(backend: str) -> Iterator[Any]:
    if backend != "docker":
        yield None
        return
    import docker

    with closing(docker.from_env()) as client:
        yield client


def full_run(suite: Path, argv: list[str]) -> tuple[float, int]:
    """Seconds and exit code of one uninterrupted run."""
    started = time.monotonic()
    done = subprocess.run(argv, cwd=suite, capture_output=True, check=False)
    return time.monotonic() - started, done.returncode


def wait_for_servers(proc: subprocess.Popen[bytes]) -> None:
    """Until the run's first worker starts provisioning (its data dir appears) or it ends."""
    pattern, deadline = run_pattern(proc.pid), time.monotonic() + UP_TIMEOUT
    while not run_dirs(pattern) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS / 2)


def kill_once(suite: Path, argv: list[str], after_up: float, backend: str, workers: str) -> Kill:
    """Start pytest, SIGKILL it ``after_up`` s after provisioning starts, wait until clean."""
    with docker_client(backend) as client:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=suite, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_servers(proc)
        deadline = time.monotonic() + after_up
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        at_kill = find_traces(proc.pid, suite, client)
        up = ENDED if proc.poll() is not None else at_kill.counts()
        delay = time.monotonic() - started
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        clean_at, exit_at, traces = wait_until_clean(proc.pid, suite, client)
        remove(traces, client)
    left = Traces(traces.containers, traces.servers, traces.dirs).describe()
    return Kill(backend, workers, round(delay, 3), round(after_up, 3), up, clean_at, exit_at, left)


def wait_until_clean(
    pid: int, suite: Path, client: Any
) -> tuple[float | None, float | None, Traces]:
    """Seconds until the run's servers were gone for good, until its processes were too.

    A worker that outlives its killed controller may still start servers, so "clean" is
    the last moment servers went away, not the first.
    """
    killed = time.monotonic()
    clean_at: float | None = None
    while True:
        traces = find_traces(pid, suite, client)
        elapsed = round(time.monotonic() - killed, 3)
        if not traces.servers_gone:
            clean_at = None
        elif clean_at is None:
            clean_at = elapsed
        if traces.servers_gone and not traces.pytest:
            return clean_at, elapsed, traces
        if elapsed >= CLEAN_SECONDS:
            return clean_at, None, traces
        time.sleep(POLL_SECONDS)


def kills(
    backend: str, count: int, versions: list[str], rng: random.Random, root: Path
) -> list[Kill]:
    """``count`` kills on ``backend``, alternating -n 0 and -n 2, at seeded random moments.

    Each lands a random time after the run's first worker starts provisioning, within
    the time its tests take: during provisioning, setup, tests or teardown.
    """
    suite = make_suite(root / backend)
    results = []
    for workers in sorted({"0" if i % 2 == 0 else "2" for i in range(count)}):
        seconds, code = full_run(suite, pytest_argv(backend, workers, versions))
        print(
            f"  {backend} -n {workers}: a full run takes {seconds:.1f} s, exit {code}", flush=True
        )
    for i in range(count):
        workers = "0" if i % 2 == 0 else "2"
        after_up = rng.uniform(0, TESTS * STEP_SECONDS / max(1, int(workers)))
        kill = kill_once(suite, pytest_argv(backend, workers, versions), after_up, backend, workers)
        print(
            f"  kill {i + 1}/{count} {backend} -n {workers} {after_up:.2f} s after provisioning "
            f"began, {kill.delay:.2f} s in ({kill.up_at_kill}): clean in "
            f"{kill.seconds_to_clean} s, all exited in {kill.seconds_to_exit} s, "
            f"left {kill.leftovers or 'nothing'}",
            flush=True,
        )
        results.append(kill)
    return results
