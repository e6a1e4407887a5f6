"""A pytest plugin for bench/reliability.py: what served each worker, and who else came.

Loaded with ``-p reliability_probe`` (bench/ on PYTHONPATH) and RELIABILITY_PROBE_OUT set
to a directory. Each worker marks its servers with its run id when they start (a comment on
its PostgreSQL database, a key in Redis database 15, which no test uses) and at the end
writes one JSON file: its servers' ports and identities, whether both marks are still its
own, and - where the servers are processes on this host - the processes of every
connection the servers have open, which must all be this worker's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from servicematrix.info import ServerInfo
from servicematrix.plugin import STATE

MARK_DB = 15
MARK_KEY = "servicematrix:owner"
ESTABLISHED = "01"
SAMPLE_SECONDS = 1.0


@dataclass
class Probe:
    """This worker's servers, its run, and the pids seen holding connections to them."""

    pg: ServerInfo
    rd: ServerInfo
    run: str
    pids: set[int] = field(default_factory=set)
    sampled: float = 0.0

    def sample(self) -> None:
        """Note who holds connections to the servers now (local backend only)."""
        if self.pg.backend != "local":
            return
        self.pids |= connection_pids(self.pg, self.rd)
        self.sampled = time.monotonic()


@pytest.fixture(scope="session", autouse=True)
def _reliability_probe(request: pytest.FixtureRequest) -> Iterator[Probe]:
    pg: ServerInfo = request.getfixturevalue("pg_server")
    rd: ServerInfo = request.getfixturevalue("redis_server")
    probe = Probe(pg, rd, request.config.stash[STATE].run_id)
    mark(pg, rd, probe.run)
    yield probe
    probe.sample()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    entry = {
        "run": probe.run,
        "worker": worker,
        "pid": os.getpid(),
        **identify(pg, rd, probe.run),
        "connection_pids": sorted(probe.pids) if pg.backend == "local" else None,
    }
    out = Path(os.environ["RELIABILITY_PROBE_OUT"])
    (out / f"{probe.run}-{worker}.json").write_text(json.dumps(entry))


@pytest.fixture(autouse=True)
def _reliability_sample(_reliability_probe: Probe) -> Iterator[None]:
    """After a test, while its engines' pools still hold connections, now and then."""
    yield
    if time.monotonic() - _reliability_probe.sampled >= SAMPLE_SECONDS:
        _reliability_probe.sample()


def mark(pg: ServerInfo, rd: ServerInfo, run: str) -> None:
    """Write ``run`` where only a process holding this run's passwords could change it."""
    comment = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(str(pg.database)), sql.Literal(f"owner {run}")
    )
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(comment)
    with redis.Redis(host=rd.host, port=rd.port, password=rd.password, db=MARK_DB) as client:
        client.set(MARK_KEY, run)


def identify(pg: ServerInfo, rd: ServerInfo, run: str) -> dict[str, Any]:
    """Ports, process identities and marks of this worker's servers."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database'), current_setting('data_directory'),"
            " pg_postmaster_start_time()::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    comment, datadir, started = row
    with redis.Redis(host=rd.host, port=rd.port, password=rd.password, db=MARK_DB) as client:
        owner = client.get(MARK_KEY)
        marks_alone = client.dbsize() == 1
        info = client.info("server")
    return {
        "backend": pg.backend,
        "pg_port": pg.port,
        "redis_port": rd.port,
        "pg_id": f"{pg.port}@{started}",
        "redis_id": info["run_id"],
        "pg_pid": postmaster_pid(datadir),
        "redis_pid": info["process_id"] if pg.backend == "local" else None,
        "marks_intact": comment == f"owner {run}" and owner == run.encode() and marks_alone,
        "containers": containers(run) if pg.backend == "docker" else None,
    }


def containers(run: str) -> list[str]:
    """Ids of this worker's containers, by the labels the docker backend gives them."""
    import docker

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    labels = [f"io.servicematrix.run={run}", f"io.servicematrix.worker={worker}"]
    with closing(docker.from_env()) as client:
        return sorted(str(c.id) for c in client.containers.list(filters={"label": labels}))


def connection_pids(pg: ServerInfo, rd: ServerInfo) -> set[int]:
    """Pids of the processes on the client ends of the servers' open connections."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        pg_ports = [r[0] for r in conn.execute("SELECT client_port FROM pg_stat_activity")]
    with redis.Redis(host=rd.host, port=rd.port, password=rd.password) as client:
        redis_ports = [int(c["addr"].rsplit(":", 1)[1]) for c in client.client_list()]
    return owners(pg.port, pg_ports) | owners(rd.port, redis_ports)


def postmaster_pid(datadir: str) -> int | None:
    """The postmaster's pid, when its data directory is on this host (local backend)."""
    try:
        return int(Path(datadir, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def owners(server_port: int, client_ports: Sequence[int | None]) -> set[int]:
    """Pids holding the client ends of connections to ``server_port`` from ``client_ports``."""
    wanted = {p for p in client_ports if p}
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == ESTABLISHED and remote_port == server_port and local_port in wanted:
                inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        if fd_links(proc) & inodes:
            pids.add(int(proc.name))
    return pids


def fd_links(proc: Path) -> set[str]:
    """What ``proc``'s open file descriptors point at; fds closed meanwhile are skipped."""
    links: set[str] = set()
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:
        return links
    for fd in fds:
        with suppress(OSError):
            links.add(os.readlink(fd))
    return links
