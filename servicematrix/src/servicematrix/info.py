"""The connection-info type every backend returns."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

Product = Literal["postgresql", "redis", "valkey"]
# The two kinds of server a worker can have; one name each, as in the settings (pg,
# redis), the fixtures (pg_server, redis_server) and the env templates ({pg}, {redis}).
# The product is what answers: postgresql, redis or valkey.
Role = Literal["pg", "redis"]
ROLES: tuple[Role, ...] = ("pg", "redis")
TITLES: dict[Role, str] = {"pg": "PostgreSQL", "redis": "Redis"}
# The name PostgreSQL's role had before it took its settings' one; still understood.
_OLD_PG = "postgres"
MASK = "***"
# Redis's default `databases`: indexes 0 to 15.
REDIS_DATABASES = 16


def role_named(name: str, *, warn: bool = True) -> Role | None:
    """The role called ``name``, or None. "postgres", the name "pg" had before, still works,
    with a DeprecationWarning unless ``warn`` is false."""
    if name == _OLD_PG:
        if warn:
            warnings.warn(
                'the server "postgres" is now called "pg", as in servicematrix_pg and '
                'pg_server: write pg instead ("postgres" stops working in a later release)',
                DeprecationWarning,
                stacklevel=3,
            )
        return "pg"
    return next((role for role in ROLES if role == name), None)


def masked_url(url: str) -> str:
    """``url`` with its password hidden: what stands between the user name's ':' and the
    last '@'. Works on URLs too malformed to parse."""
    head, at, host = url.rpartition("@")
    if not at:
        return url
    scheme, _, userinfo = head.rpartition("://")
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else userinfo
    return f"{scheme + '://' if scheme else ''}{shown}@{host}"


def new_password() -> str:
    """A random password safe on any command line: hex, so it never starts with "--"
    (which redis-server would read as the next option) and needs no quoting in a URL."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ServerInfo:
    """A running server: where it listens, who may log in, what it is, who runs it.

    ``url()`` carries the password; build clients from it, e.g.
    ``redis.Redis.from_url(redis_server.url())``.
    """

    product: Product
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    # A database name on PostgreSQL; on Redis, the database index.
    database: str | int
    version: str
    backend: str

    @property
    def major(self) -> int:
        """The major version, as the server reported it."""
        return int(self.version.split(".")[0])

    def url(self, scheme: str | None = None, *, masked: bool = False) -> str:
        """A URL for this server, e.g. ``url("postgresql+asyncpg")``; masked for printing."""
        default = "postgresql" if self.product == "postgresql" else "redis"
        password = MASK if masked and self.password else quote(self.password, safe="")
        user = quote(self.user, safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        return f"{scheme or default}://{auth}{self.host}:{self.port}/{self.database}"

    def describe(self) -> str:
        """One line for reports: product, real version, backend and masked URL."""
        name = {"postgresql": "PostgreSQL", "redis": "Redis", "valkey": "Valkey"}[self.product]
        return f"{name} {self.version} ({self.backend}) {self.url(masked=True)}"


def redis_identity(server: Mapping[str, Any]) -> tuple[Product, str]:
    """Product and version from ``INFO server``: Valkey names itself in ``server_name``."""
    product: Product = "valkey" if server.get("server_name") == "valkey" else "redis"
    return product, str(server.get("valkey_version") or server["redis_version"])
