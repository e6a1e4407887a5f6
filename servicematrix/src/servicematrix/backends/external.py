"""The external backend: servers someone else runs (CI service containers, compose).

Servers we do not own are never wiped: each worker gets a database of its own on
PostgreSQL (created here, dropped at the end) and a Redis database index of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from urllib.parse import unquote, urlsplit

from servicematrix.backends.base import ROLES, Backend, Role
from servicematrix.config import Config, RedisVersion
from servicematrix.errors import StartupError, UnavailableError
from servicematrix.info import TITLES, ServerInfo, masked_url, redis_identity

CONNECT_TIMEOUT = 5
REDIS_DATABASES = 16


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
        from psycopg import sql

        url = self.ctx.config.pg_url
        assert url is not None
        parts = urlsplit(url)
        database = f"sm_{self.ctx.run_id}_{self.ctx.worker_id}".lower()
        conninfo = parts._replace(scheme="postgresql").geturl()
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as c:
                (raw_version,) = c.execute("SHOW server_version").fetchone() or ("?",)
                version = str(raw_version).split()[0]
                c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.Error as exc:
            raise UnavailableError(
                f"cannot use PostgreSQL at {masked_url(url)}: {str(exc).strip().splitlines()[0]}; "
                "check --servicematrix-pg-url"
            ) from exc
        self._pg_admin, self._pg_database = conninfo, database
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

    def control_unavailable(self) -> str | None:
        return (
            "the external backend's servers are not ours to stop; fault tests need "
            "--servicematrix-backend=local or docker"
        )

    def close(self) -> None:
        if not (self._pg_admin and self._pg_database):
            return
        import psycopg
        from psycopg import sql

        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        try:
            with psycopg.connect(self._pg_admin, autocommit=True, connect_timeout=5) as c:
                c.execute(drop.format(sql.Identifier(self._pg_database)))
        except psycopg.Error as exc:
            raise StartupError(f"could not drop database {self._pg_database}: {exc}") from exc
