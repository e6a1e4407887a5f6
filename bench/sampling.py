"""The servers' memory while a run goes on: the peak of their summed PSS, from /proc.

Counted: processes that appeared after the sampler started and are servers (postgres,
redis-server, valkey-server), Docker's userland proxies, or a container's first process
(whatever its name, e.g. a holder's sleep).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
SERVERS = {"postgres", "redis-server", "valkey-server", "docker-proxy"}
INTERVAL = 0.1


def pids() -> set[int]:
    return {int(p.name) for p in PROC.iterdir() if p.name.isdigit()}


def comm_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's name and its parent's pid, from /proc/PID/stat; None once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces; the fields after it are plain.
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    return name, int(stat[stat.rindex(")") + 2 :].split()[1])


def pss_kib(pid: int) -> int:
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)


class PssSampler:
    """``with PssSampler() as s: ...`` then ``s.peak_kib``."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._before = pids()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _counted(self, pid: int) -> bool:
        own = comm_and_parent(pid)
        if own is None:
            return False
        parent = comm_and_parent(own[1])
        return own[0] in SERVERS or (parent is not None and parent[0].startswith("containerd-shim"))

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            total = sum(pss_kib(p) for p in pids() - self._before if self._counted(p))
            self.peak_kib = max(self.peak_kib, total)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
