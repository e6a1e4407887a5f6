"""Bad configuration, tried for real: each must end in one line, a non-zero exit, no hang.

Every case runs as a subprocess twice where it applies: ``pytest`` (a usage error, exit
code 4) and ``python -m servicematrix check`` (exit code 3). The external-URL cases point
at a real PostgreSQL and Redis started here, or at a loopback port nobody listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from servicematrix.config import Config
from servicematrix.provision import Worker, new_run_id

BOUND_SECONDS = 15.0
PYTEST_USAGE_ERROR = 4
CHECK_UNSERVABLE = 3
SECRET = "s3cret-never-shown"  # noqa: S105 - a marker that must never be printed
GOOD_URLS = ("--servicematrix-pg-url={pg}", "--servicematrix-redis-url={redis}")
PG_URL = "--servicematrix-pg-url=postgresql://postgres:{secret}@127.0.0.1:{port}/postgres"
REDIS_URL = "--servicematrix-redis-url=redis://:{secret}@127.0.0.1:{port}/0"


@dataclass(frozen=True)
class Case:
    """One bad input: its options (with {placeholders}) and environment."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("unknown PostgreSQL version", ("--servicematrix-pg=99",)),
    Case("unknown Redis version", ("--servicematrix-redis=banana",)),
    Case(
        "no Docker engine (socket nobody listens on)",
        ("--servicematrix-backend=docker",),
        {"DOCKER_HOST": "unix://{tmp}/no-engine.sock"},
    ),
    Case(
        "Docker host that is no engine",
        ("--servicematrix-backend=docker",),
        {"DOCKER_HOST": "tcp://127.0.0.1:{listener}"},
    ),
    Case(
        "missing image, pulls impossible",
        ("--servicematrix-backend=docker", "--servicematrix-image-prefix=absent.invalid/mirror/"),
    ),
    Case(
        "missing binaries (local PostgreSQL 14)",
        ("--servicematrix-backend=local", "--servicematrix-pg=14"),
    ),
    Case(
        "unreachable PostgreSQL URL",
        (PG_URL.format(secret=SECRET, port="{closed}"), GOOD_URLS[1]),
    ),
    Case(
        "unreachable Redis URL",
        (GOOD_URLS[0], REDIS_URL.format(secret=SECRET, port="{closed}")),
    ),
    Case(
        "wrong PostgreSQL password",
        (PG_URL.format(secret=SECRET, port="{pg_port}"), GOOD_URLS[1]),
    ),
    Case(
        "wrong Redis password",
        (GOOD_URLS[0], REDIS_URL.format(secret=SECRET, port="{redis_port}")),
    ),
    Case(
        "malformed URL: port not a number",
        (f"--servicematrix-pg-url=postgresql://u:{SECRET}@127.0.0.1:notaport/db",),
    ),
    Case(
        "malformed URL: Redis database not an index",
        (f"--servicematrix-redis-url=redis://:{SECRET}@127.0.0.1:6379/cache",),
    ),
    Case("malformed URL: no scheme", (f"--servicematrix-pg-url=u:{SECRET}@127.0.0.1:5432/db",)),
    Case("tmp dir that does not exist", ("--servicematrix-tmp-dir={tmp}/missing",)),
    Case("report path under a file", ("--servicematrix-report={tmp}/file/report.json",)),
]


@dataclass
class Outcome:
    """How one bad input ended under one command."""

    case: str
    command: str
    exit_code: int | None
    lines: list[str]
    seconds: float
    expected_code: int
    shown_secret: bool

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == self.expected_code
            and len(self.lines) == 1
            and self.seconds < BOUND_SECONDS
            and not self.shown_secret
        )


@contextmanager
def not_an_engine() -> Iterator[int]:
    """A loopback port that accepts connections and closes them."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                listener.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        thread.join()
        listener.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_case(argv: list[str], env: dict[str, str], cwd: Path, secrets: list[str]) -> Outcome:
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=BOUND_SECONDS * 4,
            check=False,
        )
        code: int | None = done.returncode
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, str(exc.stdout or "") + str(exc.stderr or "")
    seconds = time.monotonic() - started
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    shown = any(s in output for s in secrets)
    return Outcome("", "", code, lines, round(seconds, 2), 0, shown)


def try_all(root: Path) -> list[Outcome]:
    """Every case under pytest and under ``check``."""
    suite = root / "bad-config"
    suite.mkdir(parents=True)
    (suite / "test_a.py").write_text("def test_a(pg_server, redis_server):\n    pass\n")
    (suite / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider\n"
        "asyncio_default_fixture_loop_scope = session\n"
        "asyncio_default_test_loop_scope = session\n"
    )
    (suite / "file").touch()
    outcomes = []
    config = Config(backend="local")
    with Worker(config, "local", new_run_id(), "bad-config") as worker, not_an_engine() as port:
        pg, rd = worker.ready().values()
        values = {
            "tmp": str(suite),
            "listener": str(port),
            "closed": str(closed_port()),
            "pg": pg.url(),
            "redis": rd.url(),
            "pg_port": str(pg.port),
            "redis_port": str(rd.port),
        }
        secrets = [SECRET, pg.password, rd.password]
        for case in CASES:
            args = [a.format(**values) for a in case.args]
            env = {k: v.format(**values) for k, v in case.env.items()}
            commands = {
                "pytest": ([sys.executable, "-m", "pytest", *args], PYTEST_USAGE_ERROR),
                "check": (
                    [sys.executable, "-m", "servicematrix", "check", *args],
                    CHECK_UNSERVABLE,
                ),
            }
            for command, (argv, expected) in commands.items():
                outcome = run_case(argv, env, suite, secrets)
                outcome.case, outcome.command, outcome.expected_code = case.name, command, expected
                print(
                    f"  {case.name} ({command}): exit {outcome.exit_code}, "
                    f"{len(outcome.lines)} line(s), {outcome.seconds:.2f} s",
                    flush=True,
                )
                outcomes.append(outcome)
    return outcomes
