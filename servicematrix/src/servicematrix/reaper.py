"""Crash safety: a watchdog process that removes what a pytest process started.

The pytest process (or xdist worker) starts one reaper and tells it, line by line
over a pipe, what to remove: server processes (with the signal that stops them),
paths, containers, and the labels its containers carry. When the pipe closes - on a
clean exit or because the owner was killed, even by SIGKILL - the reaper removes
exactly those things and nothing else. When a watched process (an xdist worker's
controller) disappears, the reaper first kills its owner, so nothing new is started
behind its back, then does the same. A clean teardown uses the same path: close the
pipe and wait, so there is one way things are cleaned up.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing, suppress
from typing import IO, TYPE_CHECKING

from servicematrix.processes import poll, proc_stat

if TYPE_CHECKING:
    import docker

GRACE_SECONDS = 5.0
# How often the reaper looks at the process it watches while no order arrives.
WATCH_SECONDS = 0.5
# After an owner dies mid-start, a container it asked for may appear a moment later:
# the reaper sweeps by label for at least this long, until a sweep finds none.
SETTLE_SECONDS = 2.0
SWEEP_SECONDS = 0.5


class Reaper:
    """The owner's side: starts the watchdog and registers resources with it."""

    def __init__(self, watch_pid: int | None = None) -> None:
        argv = [sys.executable, "-m", "servicematrix.reaper"]
        if watch_pid:
            argv.append(str(watch_pid))
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self._proc.stdin is not None
        self._pipe: IO[str] = self._proc.stdin
        self._children: list[subprocess.Popen[bytes]] = []

    def track_process(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        self._children.append(proc)
        self._send(f"pid {proc.pid} {int(sig)}")

    def forget_process(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop tracking ``proc``, before its pid is reaped and may be reused by another."""
        self._children.remove(proc)
        self._send(f"forget-pid {proc.pid}")

    def track_path(self, path: str | os.PathLike[str]) -> None:
        self._send(f"path {os.fspath(path)}")

    def forget_path(self, path: str | os.PathLike[str]) -> None:
        self._send(f"forget-path {os.fspath(path)}")

    def track_container(self, container_id: str) -> None:
        self._send(f"container {container_id}")

    def forget_container(self, container_id: str) -> None:
        self._send(f"forget-container {container_id}")

    def track_labels(self, labels: dict[str, str]) -> None:
        """Remove every container with all of ``labels`` too: those not tracked yet included."""
        self._send("labels " + ",".join(f"{k}={v}" for k, v in labels.items()))

    def forget_labels(self) -> None:
        """Remove only the containers tracked by id: those forgotten since stay."""
        self._send("labels ")

    def close(self, timeout: float = 30.0) -> None:
        """Remove everything registered, and wait until it is gone."""
        if not self._pipe.closed:
            self._pipe.close()
        self._proc.wait(timeout=timeout)
        for child in self._children:
            child.wait(timeout=timeout)

    def _send(self, line: str) -> None:
        self._pipe.write(line + "\n")
        self._pipe.flush()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie awaiting its parent's wait() counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = proc_stat(pid)
    return stat is None or stat.state != "Z"


def stop_processes(pids: dict[int, int]) -> None:
    """Stop ``pids`` (pid: signal), and kill those still running after GRACE_SECONDS."""
    for pid, sig in pids.items():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue

    def gone() -> bool:
        _reap_children()
        return not any(_alive(p) for p in pids)

    poll(gone, GRACE_SECONDS, 0.01)
    for pid in [p for p in pids if _alive(p)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def _reap_children() -> None:
    # The servers are not our children unless their owner died and we are a subreaper;
    # collecting zombies here keeps _alive() honest in that case.
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def remove_containers(ids: list[str], labels: list[str], owner_died: bool) -> None:
    """Remove ``ids`` and whatever carries ``labels``; if the owner died, until none appear."""
    if not (ids or labels):
        return
    import docker  # only runs that started containers get here, and they have docker-py

    settled = time.monotonic() + SETTLE_SECONDS
    with closing(docker.from_env(timeout=60)) as client:

        def swept() -> bool:
            nonlocal ids
            found = list(dict.fromkeys([*ids, *_labelled(client, labels)]))
            for container_id in found:
                with suppress(docker.errors.NotFound):
                    client.api.remove_container(container_id, force=True, v=True)
            ids = []
            return not owner_died or (not found and time.monotonic() >= settled)

        # A dead owner's starts still under way may yet create containers: sweep until
        # none has appeared for SETTLE_SECONDS.
        poll(swept, float("inf"), SWEEP_SECONDS)


def _labelled(client: docker.DockerClient, labels: list[str]) -> list[str]:
    if not labels:
        return []
    found = client.containers.list(all=True, sparse=True, filters={"label": labels})
    return [str(c.id) for c in found]


def _read_orders(
    watch_pid: int | None, owner: int
) -> tuple[dict[int, int], list[str], list[str], list[str]]:
    """Collect registrations until the pipe closes; kill the owner if the watched pid goes."""
    pids: dict[int, int] = {}
    paths: list[str] = []
    containers: list[str] = []
    labels: list[str] = []
    fd = sys.stdin.fileno()
    # Raw reads, not readline(): a line buffered inside a file object is invisible to
    # select(), and would be lost when the watched process ends first.
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], WATCH_SECONDS)
        if not ready:
            if watch_pid and not _alive(watch_pid):
                # An xdist worker whose controller is gone would go on starting servers
                # after we removed its others; its death closes the pipe, ending the loop.
                _kill(owner)
                watch_pid = None
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            kind, _, value = line.decode().strip().partition(" ")
            if kind == "pid":
                pid, _, sig = value.partition(" ")
                pids[int(pid)] = int(sig or signal.SIGTERM)
            elif kind == "forget-pid":
                pids.pop(int(value), None)
            elif kind == "path":
                paths.append(value)
            elif kind == "forget-path":
                paths = [p for p in paths if p != value]
            elif kind == "container":
                containers.append(value)
            elif kind == "forget-container":
                containers = [c for c in containers if c != value]
            elif kind == "labels":
                labels = value.split(",") if value else []
    return pids, paths, containers, labels


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Run the watchdog: ``python -m servicematrix.reaper [WATCH_PID]``."""
    watch_pid = int(argv[0]) if argv else None
    owner = os.getppid()
    pids, paths, containers, labels = _read_orders(watch_pid, owner)
    # A clean close leaves the owner waiting for us; anything else means it died.
    owner_died = not _alive(owner)
    stop_processes(pids)
    remove_containers(containers, labels, owner_died)
    for path in reversed(paths):
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
