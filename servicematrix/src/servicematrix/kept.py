"""A failing test's data, kept on request (``keep_failed``): where it is, and its removal.

When a test that uses ``db_session`` or ``redis_client`` fails, its data is copied before
the fixtures reset it (``servicematrix.keep``), to where psql and redis-cli open it after
the run: a database ``sm_failed_<run>_<worker>_<n>`` on the worker's server, its rows as
the test saw them (a rolled-back test's uncommitted ones too), and its Redis keys, with
their times to live, in a free database index of the same server.

Servers this run started outlive it while they hold kept data: the reaper forgets them,
and a record under the cache directory says how to stop them. ``python -m servicematrix
kept`` lists the records, ``--remove`` removes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servicematrix.errors import ServiceMatrixError
from servicematrix.reaper import remove_containers, stop_processes
from servicematrix.reset import CONNECT_TIMEOUT, DROP_DATABASE

if TYPE_CHECKING:
    import psycopg

# The key that claims a Redis database index for a kept test; its value names the test.
MARKER = "servicematrix:kept"


class KeepError(ServiceMatrixError):
    """A failing test's data could not be kept, or kept data could not be removed."""


def blank_name(database: str) -> str:
    """The copy of ``database``, schema in place, that kept databases are made from."""
    return f"{database}_blank"[:63]


@dataclass
class KeptTest:
    """One failing test's data: where to open it."""

    name: str
    test: str
    pg: str | None = None
    redis: str | None = None
    # Why its Redis data could not be kept.
    note: str | None = None

    def lines(self) -> list[str]:
        """How to open and remove it, for the failure report."""
        opened = [f"psql '{self.pg}'"] if self.pg else []
        opened += [f"redis-cli -u '{self.redis}'"] if self.redis else []
        if self.note:
            opened.append(f"(its Redis data is not kept: no free database index, {self.note})")
        return [
            f"this test's data is kept as {self.name}; open it with:",
            *(f"  {line}" for line in opened),
            f"remove it with: python -m servicematrix kept --remove {self.name}",
        ]


@dataclass
class Servers:
    """What stops servers that outlived their run: processes, containers, directories."""

    pids: dict[int, int] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def merged(self, other: Servers | None) -> Servers:
        """These and ``other``'s, in one."""
        if other is None:
            return self
        return Servers(
            {**self.pids, **other.pids},
            [*self.containers, *other.containers],
            [*self.paths, *other.paths],
        )

    def stop(self) -> None:
        stop_processes(self.pids)
        remove_containers(self.containers, [], owner_died=False)
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class Record:
    """One worker's kept tests, saved as JSON under ``<cache_dir>/kept``."""

    path: Path
    backend: str
    created: float = field(default_factory=time.time)
    tests: list[KeptTest] = field(default_factory=list)
    # A login to the worker's PostgreSQL outside its database, to drop kept databases.
    login: str | None = None
    # Set when the run ends, where its servers are ours and stay up for the kept data.
    servers: Servers | None = None

    def save(self) -> None:
        body = dataclasses.asdict(self)
        body.pop("path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The URLs hold the servers' passwords: readable by their owner only.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(body, out, indent=2)

    @classmethod
    def load(cls, path: Path) -> Record:
        body = json.loads(path.read_text())
        servers = body.pop("servers")
        if servers is not None:
            servers["pids"] = {int(pid): sig for pid, sig in servers["pids"].items()}
            servers = Servers(**servers)
        tests = [KeptTest(**test) for test in body.pop("tests")]
        return cls(path, tests=tests, servers=servers, **body)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    import psycopg

    return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT)


def records(directory: Path) -> Iterator[Record]:
    """Every record under ``directory``, oldest first."""
    paths = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for path in paths:
        yield Record.load(path)


def remove(record: Record, names: Collection[str] | None) -> list[str]:
    """Remove the kept tests named (all where ``names`` is None); the servers, and the
    record, go with the last of them. Returns what was removed."""
    gone = [t for t in record.tests if names is None or t.name in names]
    record.tests = [t for t in record.tests if t not in gone]
    if not gone:
        return []
    if record.servers is not None and not record.tests:
        record.servers.stop()
    else:
        for kept in gone:
            _drop(record, kept)
    if record.tests:
        record.save()
    else:
        record.path.unlink(missing_ok=True)
    return [t.name for t in gone]


def _drop(record: Record, kept: KeptTest) -> None:
    """Drop ``kept``'s database and empty its Redis index; a server that is gone already
    took them with it."""
    if kept.pg and record.login:
        import psycopg
        from psycopg import sql

        try:
            with connect(record.login, autocommit=True) as c:
                c.execute(sql.SQL(DROP_DATABASE).format(sql.Identifier(kept.name)))
        except psycopg.OperationalError:
            pass  # no server answers: nothing is left to drop
    if kept.redis:
        import redis

        try:
            with redis.Redis.from_url(kept.redis, socket_connect_timeout=CONNECT_TIMEOUT) as c:
                c.flushdb()
        except (redis.ConnectionError, redis.TimeoutError):
            pass
