"""SIGKILL of pytest mid-test: the reaper removes that run's servers and data dirs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servicematrix.processes import poll

from .leftovers import (
    RECORD_SERVERS,
    alive,
    read_records,
    wait_for_no_leftovers,
)

CLEANUP_SECONDS = 15.0


def wait_for_file(
    path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    def appeared() -> bool:
        assert proc.poll() is None, "pytest ended before the test started:\n" + log.read_text()
        return path.exists()

    assert poll(appeared, timeout, 0.05), f"{path} did not appear"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_kill_9_mid_test_leaves_nothing(
    inner: pytest.Pytester, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = inner.mkdir("records")
    started = out / "started"
    monkeypatch.setenv("RECORD_DIR", str(out))
    shutil.copy(RECORD_SERVERS, inner.path / "conftest.py")
    inner.makepyfile(
        f"""
        import pathlib, time

        def test_blocks(recorded):
            pathlib.Path({str(started)!r}).touch()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # killed long before; bounded all the same
                time.sleep(0.05)
        """
    )
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-n",
        workers,
        "--servicematrix-backend=local",
        "-p",
        "no:cacheprovider",
    ]
    log = inner.path / "pytest.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=inner.path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_file(started, proc, log)
        records = read_records(out)
        assert records
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        assert wait_for_no_leftovers(records, CLEANUP_SECONDS) == []
        assert time.monotonic() - killed_at < CLEANUP_SECONDS
    finally:
        if proc.poll() is None:
            proc.kill()
        for record in read_records(out):
            # xdist workers outlive a killed controller until their test ends.
            if alive(int(record["owner"])):  # type: ignore[call-overload]
                os.kill(int(record["owner"]), signal.SIGKILL)  # type: ignore[call-overload]


def test_a_forgotten_process_is_left_alone() -> None:
    """A server stopped on purpose is forgotten: its pid may belong to another process later."""
    from servicematrix.reaper import Reaper

    reaper = Reaper()
    tracked, forgotten = (subprocess.Popen(["sleep", "30"]) for _ in range(2))
    try:
        reaper.track_process(tracked)
        reaper.track_process(forgotten)
        reaper.forget_process(forgotten)
        reaper.close()
        assert tracked.poll() is not None
        assert forgotten.poll() is None
    finally:
        for proc in (tracked, forgotten):
            proc.kill()
            proc.wait()
