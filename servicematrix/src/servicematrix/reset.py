"""A committed test's reset: what it empties, in SQL, and the clone that replaces it for
schemas of many tables. No SQLAlchemy, so any module can use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from servicematrix.errors import ServiceMatrixError
from servicematrix.processes import poll

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT = 10
DROP_DATABASE = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
# Before a database is copied: no one may be connected to it.
END_CONNECTIONS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = %s AND pid <> pg_backend_pid()"
)
KEEP_TABLES = ("alembic_version",)
# One round trip, whatever the number of tables.
TRUNCATE_ALL = """
DO $$
DECLARE tables text;
BEGIN
  SELECT string_agg(quote_ident(schemaname) || '.' || quote_ident(tablename), ', ')
  INTO tables
  FROM pg_tables
  WHERE schemaname = current_schema() AND tablename NOT IN ({keep});
  IF tables IS NOT NULL THEN
    EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE';
  END IF;
END $$
""".format(  # noqa: S608 - constant table names, no user input
    keep=", ".join(f"'{t}'" for t in KEEP_TABLES)
)

# After a committed test, TRUNCATE grows by about 0.3 ms a table, and making the database
# again from an emptied copy costs about 11 ms plus 0.1 ms a table (bench/reset.py, on
# the plugin's servers, fsync off): they meet between 50 and 75 tables.
CLONE_FROM_TABLES = 75
_COUNT_TABLES = (
    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename <> ALL(%s)"
)
# The plugin's own engines connect under this name: the clone may end their connections,
# which their pools then replace (ServerControl.follow), but no one else's.
APPLICATION_NAME = "servicematrix"
ADMIN_DATABASE = "servicematrix"
_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"
_OTHERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
    "AND backend_type = 'client backend' AND application_name IS DISTINCT FROM %s "
    "AND pid <> pg_backend_pid()"
)
# How long ended connections may take to be gone, and how often to look (seconds): they
# go in a millisecond or two.
_EXIT_WAIT = (5.0, 0.0002)


class ResetError(ServiceMatrixError):
    """The worker's database could not be made empty again after a committed test."""


def empty_name(database: str) -> str:
    """The emptied copy of ``database`` that the clone reset makes it again from."""
    return f"{database}_empty"[:63]


class Clone:
    """The committed reset for a schema of many tables: the worker's database dropped
    and made again from a copy of it emptied once, cheaper there than TRUNCATE.

    It ends the plugin's own pooled connections (``ended`` is told, so that their
    pools replace them) but no one else's: while another connection is open on the
    database (an application's own pool, say), TRUNCATE it is.
    """

    def __init__(self, database: str, login: str, major: int, ended: Callable[[], None]) -> None:
        self.database, self._login, self._ended = database, login, ended
        self._strategy = " STRATEGY FILE_COPY" if major >= 15 else ""  # no WAL for the copy
        self._admin: psycopg.Connection[Any] | None = None
        self._made = False

    @classmethod
    def wanted(cls, url: str, login: str, major: int, ended: Callable[[], None]) -> Clone | None:
        """The clone reset for the database at ``url``, where its tables are many
        enough; None where TRUNCATE is cheaper."""
        import psycopg

        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as c:
            row = c.execute(_COUNT_TABLES, (list(KEEP_TABLES),)).fetchone()
            database = c.info.dbname
        tables = row[0] if row else 0
        return cls(database, login, major, ended) if tables >= CLONE_FROM_TABLES else None

    def __call__(self) -> bool:
        """Make the database again, empty; False where another connection holds it."""
        import psycopg
        from psycopg import sql

        made, empty = sql.Identifier(self.database), sql.Identifier(empty_name(self.database))
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}" + self._strategy)
        try:
            c, others = self._others()
            if others:
                return False
            # Ended and waited for here, a millisecond or two: DROP and CREATE would
            # each wait a tenth of a second for a backend still on its way out.
            self._ended()
            c.execute(END_CONNECTIONS, (self.database,))
            if not poll(lambda: _count(c, self.database, None) == 0, *_EXIT_WAIT):
                return False
            if not self._made:  # a copy of the test's rows, emptied
                c.execute(sql.SQL(DROP_DATABASE).format(empty))
                c.execute(create.format(empty, made))
                with self._connect(empty_name(self.database)) as e:
                    e.execute(TRUNCATE_ALL)
                self._made = True
            c.execute(sql.SQL(DROP_DATABASE).format(made))
            c.execute(create.format(made, empty))
        except psycopg.Error as exc:
            raise ResetError(
                f"could not make the database {self.database} again from its emptied copy "
                f"after a committed test: {str(exc).strip().splitlines()[0]}"
            ) from exc
        return True

    def _others(self) -> tuple[psycopg.Connection[Any], int]:
        """The admin connection, and how many others are open on the database."""
        import psycopg

        if self._admin is not None:
            try:
                return self._admin, _count(self._admin, self.database, APPLICATION_NAME)
            except psycopg.OperationalError:  # the server restarted (servicematrix_servers)
                self._admin.close()
        admin = self._first_admin()
        return admin, _count(admin, self.database, APPLICATION_NAME)

    def _first_admin(self) -> psycopg.Connection[Any]:
        """A connection kept for the run on a database of its own: the worker's may be
        the login's, and one on template1 would stop others being created."""
        from psycopg import sql

        with self._connect() as c:
            if not c.execute(_EXISTS, (ADMIN_DATABASE,)).fetchone():
                c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ADMIN_DATABASE)))
        self._admin = self._connect(ADMIN_DATABASE)
        return self._admin

    def _connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(
            psycopg.conninfo.make_conninfo(
                self._login,
                **({"dbname": database} if database else {}),
                connect_timeout=CONNECT_TIMEOUT,
                application_name=APPLICATION_NAME,
            ),
            autocommit=True,
        )

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def _count(admin: psycopg.Connection[Any], database: str, but: str | None) -> int:
    """Clients connected to ``database``, but those under the application name ``but``
    (every one where ``but`` is None)."""
    row = admin.execute(_OTHERS, (database, but)).fetchone()
    return int(row[0]) if row else 0
