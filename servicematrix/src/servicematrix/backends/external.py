"""The external backend: servers someone else runs (CI service containers, compose).

Servers we do not own are never wiped: each worker gets a database of its own on
PostgreSQL (created here, dropped at the end) and a Redis database index of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from servicematrix.backends.base import ROLES, Backend, Role
from servicematrix.config import Config, RedisVersion
from servicematrix.errors import StartupError, UnavailableError
from servicematrix.info import REDIS_DATABASES, TITLES, ServerInfo, masked_url, redis_identity
from servicematrix.kept import blank_name
from servicematrix.reset import DROP_DATABASE

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT = 5
_CREATE_FROM = "CREATE DATABASE {} TEMPLATE {}"


def _problem(config: Config, roles: Collection[Role]) -> str | None:
    """Why the servers at the URLs cannot serve ``roles``, in one line; None if they can."""
    for role in roles:
        problem = (
            _postgres_problem(config.pg_url or "", config.pg)
            if role == "pg"
            else _redis_problem(config.redis_url or "", config.redis)
        )
        if problem:
            return problem
    return None


def _postgres_problem(url: str, wanted: int | None) -> str | None:
    import psycopg

    conninfo = urlsplit(url)._replace(scheme="postgresql").geturl()
    try:
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT) as conn:
            major = conn.info.server_version // 10000
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0]
        return f"cannot use PostgreSQL at {masked_url(url)}: {first}; check --servicematrix-pg-url"
    if wanted is not None and major != wanted:
        return (
            f"the server at {masked_url(url)} runs PostgreSQL {major}, but "
            f"--servicematrix-pg={wanted} was asked for: point --servicematrix-pg-url at a "
            f"PostgreSQL {wanted} server"
        )
    return None


def _redis_problem(url: str, wanted: RedisVersion | None) -> str | None:
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        with client:
            product, version = redis_identity(client.info("server"))
    except redis.RedisError as exc:
        return f"cannot use Redis at {masked_url(url)}: {exc}; check --servicematrix-redis-url"
    if wanted is not None and (product, int(version.split(".")[0])) != (
        wanted.product,
        wanted.major,
    ):
        return (
            f"the server at {masked_url(url)} is {product} {version}, but --servicematrix-redis="
            f"{wanted} was asked for: point --servicematrix-redis-url at a {wanted} server"
        )
    return None


class ExternalBackend(Backend):
    """Attaches to ``pg_url`` and ``redis_url``."""

    name = "external"
    _pg_admin: str | None = None
    _pg_database: str | None = None
    # The schema template this worker made, to drop at the end unless schema_keep.
    _kept: str | None = None

    @classmethod
    def unavailable(cls, config: Config, roles: Collection[Role] = ROLES) -> str | None:
        urls = {"pg": config.pg_url, "redis": config.redis_url}
        missing = [role for role in roles if not urls[role]]
        if missing:
            stem = f"{missing[0]}_url"
            return (
                f"the tests use {TITLES[missing[0]]}, which needs a URL: set --servicematrix-"
                f"{stem.replace('_', '-')} (ini servicematrix_{stem}, env "
                f"SERVICEMATRIX_{stem.upper()})"
            )
        return None

    @classmethod
    def prepare(
        cls, config: Config, roles: Collection[Role], report: Callable[[str], None]
    ) -> str | None:
        """Log in once, before any test: a URL that cannot be used, or a server of another
        version, is one usage error instead of a failure in every test."""
        return _problem(config, roles)

    def start_pg(self) -> ServerInfo:
        import psycopg

        url = self.ctx.config.pg_url
        assert url is not None
        parts = urlsplit(url)
        database = f"sm_{self.ctx.run_id}_{self.ctx.worker_id}".lower()
        conninfo = parts._replace(scheme="postgresql").geturl()
        self._pg_admin, self._pg_database = conninfo, database
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as c:
                (raw_version,) = c.execute("SHOW server_version").fetchone() or ("?",)
                version = str(raw_version).split()[0]
                self.schema_reused = self._create(c)
        except psycopg.Error as exc:
            raise UnavailableError(
                f"cannot use PostgreSQL at {masked_url(url)}: {str(exc).strip().splitlines()[0]}; "
                "check --servicematrix-pg-url"
            ) from exc
        return ServerInfo(
            "postgresql",
            parts.hostname or "127.0.0.1",
            parts.port or 5432,
            unquote(parts.username or ""),
            unquote(parts.password or ""),
            database,
            version,
            self.name,
        )

    def start_redis(self) -> ServerInfo:
        import redis

        url = self.ctx.config.redis_url
        assert url is not None
        parts = urlsplit(url)
        base = int(parts.path.lstrip("/") or 0)
        index = base + self.ctx.worker_index
        if index >= REDIS_DATABASES:
            raise UnavailableError(
                f"Redis database index {index} for worker {self.ctx.worker_id} is out of range: "
                "use fewer workers or a lower database index in --servicematrix-redis-url"
            )
        try:
            client = redis.Redis.from_url(
                url,
                db=index,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=CONNECT_TIMEOUT,
            )
            with client:
                info = client.info("server")
        except redis.RedisError as exc:
            raise UnavailableError(
                f"cannot use Redis at {masked_url(url)}: {exc}; check --servicematrix-redis-url"
            ) from exc
        # The version was checked once, before any test (prepare).
        product, version = redis_identity(info)
        return ServerInfo(
            product,
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            unquote(parts.username or ""),
            unquote(parts.password or ""),
            index,
            version,
            self.name,
        )

    def has_schema(self) -> bool:
        with self._admin() as c:
            return self._template(c) is not None

    def adopt_schema(self) -> bool:
        from psycopg import sql

        with self._admin() as c:
            c.execute(sql.SQL(DROP_DATABASE).format(sql.Identifier(self._database)))
            self._create(c)
        return True

    def keep_schema(self) -> bool:
        from psycopg import errors, sql

        assert self.ctx.schema is not None
        name = self.ctx.schema.name
        with self._admin() as c:
            # The setup's own connections would make the database unfit to copy.
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self._database,),
            )
            with contextlib.suppress(errors.DuplicateDatabase):  # another run's, just made
                c.execute(
                    sql.SQL(_CREATE_FROM).format(
                        sql.Identifier(name), sql.Identifier(self._database)
                    )
                )
            self._kept = name
            stale = c.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (self.ctx.schema.prefix + "%",),
            ).fetchall()
            for (old,) in stale:
                if self.ctx.schema.stale(old):
                    with contextlib.suppress(errors.ObjectInUse):  # another run clones it
                        c.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(old)))
        return True

    @property
    def _database(self) -> str:
        assert self._pg_database is not None
        return self._pg_database

    def _admin(self) -> psycopg.Connection[Any]:
        import psycopg

        assert self._pg_admin is not None
        return psycopg.connect(self._pg_admin, autocommit=True, connect_timeout=CONNECT_TIMEOUT)

    def _template(self, c: psycopg.Connection[Any]) -> str | None:
        schema = self.ctx.schema
        if schema is None:
            return None
        found = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (schema.name,))
        return schema.name if found.fetchone() else None

    def _create(self, c: psycopg.Connection[Any]) -> bool:
        """Create this worker's database, from the schema template where one is kept."""
        from psycopg import sql

        template = self._template(c)
        if template is None:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._database)))
            return False
        c.execute(
            sql.SQL(_CREATE_FROM).format(sql.Identifier(self._database), sql.Identifier(template))
        )
        return True

    def pg_login(self, server: ServerInfo) -> str:
        assert self._pg_admin is not None
        return self._pg_admin

    def control_unavailable(self) -> str | None:
        return (
            "the external backend's servers are not ours to stop; fault tests need "
            "--servicematrix-backend=local or docker"
        )

    def close(self) -> None:
        """Drop this worker's database, and the template it kept unless asked to keep it."""
        if not (self._pg_admin and self._pg_database):
            return
        import psycopg
        from psycopg import sql

        kept = None if self.ctx.config.schema_keep else self._kept
        # The copy that a failing test's kept database is made from (servicematrix.kept).
        blank = blank_name(self._pg_database) if self.ctx.config.keep_failed else None
        try:
            with self._admin() as c:
                for database in filter(None, (self._pg_database, kept, blank)):
                    c.execute(sql.SQL(DROP_DATABASE).format(sql.Identifier(database)))
        except psycopg.Error as exc:
            raise StartupError(f"could not drop database {self._pg_database}: {exc}") from exc
