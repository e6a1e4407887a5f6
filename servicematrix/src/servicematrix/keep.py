"""Keeping a failing test's data (``keep_failed``): the worker's side.

Before the fixtures reset a failing test's data, a database on the worker's server is
made from the copy taken once the schema was in place (``make_blank``), then filled with
the rows the test saw, read through its own connection; its Redis keys go to a free
database index claimed with a marker key. ``servicematrix.kept`` holds the record of
what was kept, and its removal.
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servicematrix.info import REDIS_DATABASES, ServerInfo
from servicematrix.kept import (
    MARKER,
    KeepError,
    KeptTest,
    Record,
    Servers,
    blank_name,
    connect,
    first_line,
)
from servicematrix.reset import (
    CONNECT_TIMEOUT,
    DROP_DATABASE,
    END_CONNECTIONS,
    KEEP_TABLES,
    TRUNCATE_ALL,
)

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


def make_blank(pg: ServerInfo, login: str) -> None:
    """Copy the worker's database, its schema just put in place, as its blank: what kept
    databases are made from, and what a warm server's database is made again from."""
    import psycopg
    from psycopg import sql

    assert isinstance(pg.database, str)
    blank, source = sql.Identifier(blank_name(pg.database)), sql.Identifier(pg.database)
    try:
        with connect(login, autocommit=True) as c:
            # The setup's own connections would make the database unfit to copy.
            c.execute(END_CONNECTIONS, (pg.database,))
            c.execute(sql.SQL(DROP_DATABASE).format(blank))
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(blank, source))
    except psycopg.Error as exc:
        raise KeepError(
            f"could not copy the database {pg.database} once its schema was made, which "
            f"keep_failed and warm need: {first_line(exc)}; set servicematrix_keep_failed=no "
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
            with connect(self.source.url()) as c:
                found = c.execute(_TABLES, (list(KEEP_TABLES),)).fetchall()
        except psycopg.Error as exc:
            raise KeepError(
                f"could not keep the data of {self.kept.test}: {first_line(exc)}"
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
            with connect(self.login, autocommit=True) as c:
                c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(database, blank))
            if rows is None:
                with connect(self.source.url()) as c:
                    rows = [[row for (row,) in c.execute(read)] for read in self.reads]
            with connect(self.kept.pg or "") as c:
                c.execute(TRUNCATE_ALL)  # what the setup seeded: the test's rows say it all
                for (name, columns), table_rows in zip(self.tables, rows, strict=True):
                    c.execute(_insert(name, columns), (table_rows,))
                with connect(self.source.url()) as src:
                    for sequence, value in src.execute(_SEQUENCES):
                        c.execute("SELECT setval(%s, %s)", (sequence, value))
        except Exception as exc:
            raise KeepError(
                f"could not keep the data of {self.kept.test}: {first_line(exc)}"
            ) from exc


def _insert(table: str, columns: str) -> Any:
    from psycopg import sql

    # A row's text is its composite type's input: (r::table).* gives the columns back.
    return sql.SQL(
        "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM "
        "(SELECT (r::{table}).* FROM unnest(%s::text[]) AS r) AS rows"
    ).format(table=sql.SQL(table), columns=sql.SQL(columns))


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
