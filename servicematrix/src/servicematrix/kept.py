"""A failing test's data, kept on request (``keep_failed``), and the record that finds it.

When a test that uses ``db_session`` or ``redis_client`` fails, its data is copied before
the fixtures reset it, to where psql and redis-cli open it after the run:

- PostgreSQL: a database ``sm_failed_<run>_<worker>_<n>`` on the worker's server, made
  from a copy of the worker's database taken once its schema was in place (nothing else
  may be connected to a database CREATE DATABASE copies, and the test's pools are), then
  filled with the rows the test saw. They are read through the test's own connection, so
  a rolled-back test's uncommitted rows are kept too.
- Redis: every key, with its time to live, in a free database index of the same server,
  claimed with a marker key.

Servers this run started outlive it while they hold kept data: the reaper forgets them,
and a record under the cache directory says how to stop them. ``python -m servicematrix
kept`` lists the records, ``--remove`` removes them.
"""

from __future__ import annotations

import dataclasses
import graphlib
import json
import os
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servicematrix.errors import ServiceMatrixError
from servicematrix.info import REDIS_DATABASES, ServerInfo
from servicematrix.reaper import remove_containers, stop_processes
from servicematrix.reset import (
    CONNECT_TIMEOUT,
    DROP_DATABASE,
    END_CONNECTIONS,
    KEEP_TABLES,
    TRUNCATE_ALL,
)

if TYPE_CHECKING:
    import psycopg

# The key that claims a Redis database index for a kept test; its value names the test.
MARKER = "servicematrix:kept"
# The tables the reset empties (those of the current schema): name, the columns a row can
# be given (not generated ones), the tables it references. (%% is % under parameters.)
_TABLES = """
SELECT format('%%I.%%I', n.nspname, c.relname),
       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = ''),
       ARRAY(SELECT format('%%I.%%I', pn.nspname, p.relname) FROM pg_constraint f
             JOIN pg_class p ON p.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname <> ALL(%s)
"""
_SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
WHERE schemaname = current_schema() AND last_value IS NOT NULL
"""


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


def make_blank(pg: ServerInfo, login: str) -> None:
    """Copy the worker's database, its schema just put in place, as its blank: what kept
    databases are made from, and what a warm server's database is made again from."""
    import psycopg
    from psycopg import sql

    assert isinstance(pg.database, str)
    blank, source = sql.Identifier(blank_name(pg.database)), sql.Identifier(pg.database)
    try:
        with _connect(login, autocommit=True) as c:
            # The setup's own connections would make the database unfit to copy.
            c.execute(END_CONNECTIONS, (pg.database,))
            c.execute(sql.SQL(DROP_DATABASE).format(blank))
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(blank, source))
    except psycopg.Error as exc:
        raise KeepError(
            f"could not copy the database {pg.database} once its schema was made, which "
            f"keep_failed and warm need: {_first_line(exc)}; set servicematrix_keep_failed=no "
            "and servicematrix_warm=no to run without them"
        ) from exc


class Keeper:
    """One worker's side: claims where a failing test's data goes, then copies it there."""

    def __init__(self, directory: Path, run_id: str, worker_id: str, backend: str) -> None:
        self.record = Record(directory / f"{run_id}-{worker_id}.json", backend)
        self._prefix = f"sm_failed_{run_id}_{worker_id}".lower()
        self._pg: ServerInfo | None = None
        self._pending: dict[str, KeptTest] = {}

    def snapshot(self, pg: ServerInfo, login: str) -> None:
        """The worker's database just got its schema: kept databases start from its copy."""
        make_blank(pg, login)
        self._pg, self.record.login = pg, login

    def claim(
        self, test: str, pg: bool, redis: ServerInfo | None, taken: Collection[int]
    ) -> KeptTest:
        """Name where ``test``'s data goes, before its fixtures are torn down; a Redis
        index out of ``taken`` (the run's own) is claimed now."""
        kept = KeptTest(f"{self._prefix}_{len(self.record.tests) + 1}", test)
        if pg and self._pg is not None:
            kept.pg = dataclasses.replace(self._pg, database=kept.name).url()
        if redis is not None:
            index, kept.note = _claim_redis(redis, kept.name, taken)
            # A user name, for redis-cli: with none, `-u redis://:password@…` fails to log in.
            user = redis.user or ("default" if redis.password else "")
            kept.redis = (
                None
                if index is None
                else dataclasses.replace(redis, user=user, database=index).url()
            )
        self.record.tests.append(kept)
        self.record.save()
        self._pending[test] = kept
        return kept

    def pg_copy(self, test: str) -> PgCopy | None:
        """The copy of ``test``'s rows to make, if it failed and its data is kept."""
        kept = self._pending.get(test)
        if kept is None or kept.pg is None or self._pg is None or self.record.login is None:
            return None
        return PgCopy(kept, self._pg, self.record.login)

    def copy_redis(self, test: str, source: ServerInfo) -> None:
        """Copy every key ``test`` left in ``source``, if it failed and its data is kept."""
        import redis

        kept = self._pending.get(test)
        if kept is None or kept.redis is None:
            return
        try:
            with (
                redis.Redis.from_url(source.url()) as src,
                redis.Redis.from_url(kept.redis) as dst,
            ):
                for key in src.scan_iter(count=1000):
                    dumped, ttl = src.dump(key), src.pttl(key)
                    if dumped is not None:  # None: it expired meanwhile
                        dst.restore(key, max(int(ttl), 0), dumped, replace=True)
        except redis.RedisError as exc:
            raise KeepError(f"could not keep the Redis data of {test}: {exc}") from exc

    def close(self, servers: Servers | None) -> None:
        """At the worker's end, something kept: ``servers`` (None: not ours) outlive it."""
        self.record.servers = servers
        self.record.save()


@dataclass
class PgCopy:
    """A failing test's rows, read by the test's own connection, into its kept database."""

    kept: KeptTest
    source: ServerInfo
    login: str
    tables: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        import psycopg

        try:
            with _connect(self.source.url()) as c:
                found = c.execute(_TABLES, (list(KEEP_TABLES),)).fetchall()
        except psycopg.Error as exc:
            raise KeepError(
                f"could not keep the data of {self.kept.test}: {_first_line(exc)}"
            ) from exc
        columns = {name: cols for name, cols, _ in found}
        parents = {name: set(refs) & columns.keys() for name, _, refs in found}
        try:
            order = list(graphlib.TopologicalSorter(parents).static_order())
        except graphlib.CycleError as exc:
            raise KeepError(
                f"could not keep the data of {self.kept.test}: its tables reference each "
                f"other in a cycle ({', '.join(exc.args[1])})"
            ) from None
        self.tables = [(name, columns[name]) for name in order]

    @property
    def reads(self) -> list[str]:
        """One statement per table, for the test's connection: its rows, as text."""
        return [f"SELECT r::text FROM {name} AS r" for name, _ in self.tables]  # noqa: S608

    def write(self, rows: list[list[str]] | None) -> None:
        """Make the kept database and fill it with ``rows`` (one list per statement of
        ``reads``), or with what is committed where the test's connection could not read."""
        from psycopg import sql

        database = sql.Identifier(self.kept.name)
        blank = sql.Identifier(blank_name(str(self.source.database)))
        try:
            with _connect(self.login, autocommit=True) as c:
                c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(database, blank))
            if rows is None:
                with _connect(self.source.url()) as c:
                    rows = [[row for (row,) in c.execute(read)] for read in self.reads]
            with _connect(self.kept.pg or "") as c:
                c.execute(TRUNCATE_ALL)  # what the setup seeded: the test's rows say it all
                for (name, columns), table_rows in zip(self.tables, rows, strict=True):
                    c.execute(_insert(name, columns), (table_rows,))
                with _connect(self.source.url()) as src:
                    for sequence, value in src.execute(_SEQUENCES):
                        c.execute("SELECT setval(%s, %s)", (sequence, value))
        except Exception as exc:
            raise KeepError(
                f"could not keep the data of {self.kept.test}: {_first_line(exc)}"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _insert(table: str, columns: str) -> Any:
    from psycopg import sql

    # A row's text is its composite type's input: (r::table).* gives the columns back.
    return sql.SQL(
        "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM "
        "(SELECT (r::{table}).* FROM unnest(%s::text[]) AS r) AS rows"
    ).format(table=sql.SQL(table), columns=sql.SQL(columns))


def _connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    import psycopg

    return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT)


def _claim_redis(
    server: ServerInfo, name: str, taken: Collection[int]
) -> tuple[int | None, str | None]:
    """The highest empty database index not ``taken``, claimed with MARKER; or None, and
    why there is none."""
    import redis

    last = "every index holds data"

    for index in range(REDIS_DATABASES - 1, -1, -1):
        if index in taken:
            continue
        url = dataclasses.replace(server, database=index).url()
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT) as c:
                if c.dbsize() == 0 and c.set(MARKER, name, nx=True):
                    return index, None
        except redis.ResponseError as exc:  # e.g. an index beyond the server's `databases`
            last = str(exc)
            continue
        except redis.RedisError as exc:
            raise KeepError(f"could not keep the Redis data of a failed test: {exc}") from exc
    return None, last


# The command's side: list and remove what runs kept.


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
            with _connect(record.login, autocommit=True) as c:
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
