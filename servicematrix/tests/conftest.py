from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from servicematrix.backends.docker import DockerBackend
from servicematrix.config import Config
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker, new_run_id

from .support import INNER_INI, LOCAL

# pytester's in-process runs drop the modules they imported when they end. A library
# first imported inside one comes back as a second copy: docker-py's (requests') classes
# then fail isinstance checks against the first copy's objects. Imported here, they stay
# one copy.
for _module in ("docker", "psycopg", "redis"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)


@pytest.fixture
def clean(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs see no servicematrix settings but their own."""
    # Inner runs are plain pytest runs, even inside an xdist worker of ours.
    for name in list(os.environ):
        if name.startswith(("SERVICEMATRIX_", "PYTEST_XDIST_")):
            monkeypatch.delenv(name)
    return pytester


@pytest.fixture
def inner(clean: pytest.Pytester) -> pytest.Pytester:
    """``clean``, with the ini the plugin's inner test projects share."""
    clean.makeini(INNER_INI)
    return clean


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[ServerInfo, ServerInfo]]:
    """A PostgreSQL and a Redis of our own, to play 'somebody else's servers'."""
    with Worker(LOCAL, "local", new_run_id(), "external-fixture") as worker:
        pg, redis_info = worker.ready().values()
        yield pg, redis_info


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The Docker engine; without one these tests skip, except under CI where they fail."""
    config = Config.parse({"backend": "docker", "pg": "15", "redis": "7"})
    reason = DockerBackend.unavailable(config)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"docker backend unavailable under CI: {reason}")
        pytest.skip(reason)
    import docker

    with closing(docker.from_env()) as client:
        yield client


def run_ids_alive(run_id: str) -> list[str]:
    """Command lines of live processes and paths that carry ``run_id``."""
    procs = [line for line in command_lines() if run_id in line]
    dirs = [str(p) for root in (Path("/dev/shm"), Path("/tmp")) for p in root.glob(f"*{run_id}*")]
    return procs + dirs


def command_lines() -> list[str]:
    """Every live process's command line, from /proc (a bare container has no ``ps``)."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                raw = (entry / "cmdline").read_bytes()
                lines.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
    return [line for line in lines if line]
