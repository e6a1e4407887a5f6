"""Running server processes: ports, privileges, readiness, and the one way to wait."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypedDict, TypeVar

from servicematrix.errors import StartupError

POLL_SECONDS = 0.005
T = TypeVar("T")
_UNPRIVILEGED_USER = "nobody"
_MIN_SHM_BYTES = 1 << 30


def poll(check: Callable[[], T | None], timeout: float, interval: float = POLL_SECONDS) -> T | None:
    """Call ``check`` every ``interval`` seconds until it returns neither None nor False.

    Returns that answer, or None once ``timeout`` seconds have passed. ``check`` raises to
    stop early, e.g. when the process it waits on has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer is not None and answer is not False:
            return answer
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class ProcStat(NamedTuple):
    """What /proc/PID/stat says of a process: its name, state letter and parent."""

    name: str
    state: str
    ppid: int


def proc_stat(pid: int) -> ProcStat | None:
    """``pid``'s /proc/PID/stat, or None once it is gone (or where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may itself hold spaces or parentheses.
    head, _, tail = stat.rpartition(")")
    state, ppid = tail.split()[:2]
    return ProcStat(head.partition("(")[2], state, int(ppid))


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) and stat.ppid == pid:
            found.append(int(entry.name))
    return found


def free_port() -> int:
    """A loopback port nobody listens on right now (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def data_root() -> Path:
    """Where throwaway data dirs go: memory-backed /dev/shm when it has room, else TMPDIR."""
    shm = Path("/dev/shm")  # noqa: S108 - a per-run mkdtemp goes inside
    try:
        stat = os.statvfs(shm)
    except OSError:
        return Path(tempfile.gettempdir())
    roomy = stat.f_bavail * stat.f_frsize >= _MIN_SHM_BYTES
    return shm if roomy and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def server_account() -> tuple[int, int] | None:
    """(uid, gid) to run servers as: PostgreSQL refuses root, so root hands them to nobody."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(_UNPRIVILEGED_USER)
    return entry.pw_uid, entry.pw_gid


def give_to_server(path: Path) -> None:
    """Make ``path`` (recursively) owned by the server account, if servers run as another."""
    account = server_account()
    if account is None:
        return
    uid, gid = account
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


class AccountArgs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def as_server_account() -> AccountArgs:
    """subprocess keyword arguments that run a command as the server account."""
    account = server_account()
    if account is None:
        return {}
    return {"user": account[0], "group": account[1], "extra_groups": []}


def spawn(argv: Sequence[str | Path], log: Path) -> subprocess.Popen[bytes]:
    """Start a server in the background as the server account, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_server_account(),
        )


def wait_until(
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    log: Path,
    what: str,
    timeout: float = 30.0,
) -> None:
    """Poll ``ready`` until it is true; fail at once if the process exits."""

    def check() -> bool:
        if ready():
            return True
        if proc.poll() is not None:
            raise StartupError(f"{what} exited with code {proc.returncode}: {last_line(log)}")
        return False

    if not poll(check, timeout):
        proc.kill()
        raise StartupError(f"{what} was not ready after {timeout:.0f} s: {last_line(log)}")


def last_line(log: Path) -> str:
    """The last non-empty line of a log, to quote in a one-line error."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"
