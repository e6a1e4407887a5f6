"""One frozen configuration, resolved from CLI > ini > env > default.

Every setting has one stem that gives its three names: ``backend`` is the CLI option
``--servicematrix-backend``, the ini key ``servicematrix_backend`` and the environment
variable ``SERVICEMATRIX_BACKEND``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from servicematrix.errors import ConfigError
from servicematrix.info import masked_url

Backend = Literal["auto", "docker", "local", "external"]
BACKENDS: tuple[Backend, ...] = ("auto", "docker", "local", "external")
DRIVERS = ("sync", "async")
DockerAddress = Literal["auto", "bridge", "loopback"]
DOCKER_ADDRESSES: tuple[DockerAddress, ...] = ("auto", "bridge", "loopback")
# What a run that names no version gets, whichever backend serves it: installing an
# extra or a server package never changes it.
DEFAULT_PG = 17
_REDIS_VERSION = re.compile(r"^(?:(redis|valkey)-)?(\d+)$")
_REDIS_DB = re.compile(r"^(/\d*)?$")
_YES = ("yes", "true", "1", "on")
_NO = ("no", "false", "0", "off")
_URL_EXAMPLES = {
    "pg_url": "a postgresql://user:password@host:port/db URL",
    "redis_url": "a redis://:password@host:port/N URL, N a database index",
}


@dataclass(frozen=True)
class Setting:
    """One user-settable value and its three names."""

    stem: str
    help: str
    default: str | None = None
    # pytest's ini type: "args" for a list (which pyproject.toml may give as a TOML list).
    ini_type: Literal["string", "args"] = "string"

    @property
    def cli(self) -> str:
        return "--servicematrix-" + self.stem.replace("_", "-")

    @property
    def ini(self) -> str:
        return "servicematrix_" + self.stem

    @property
    def env(self) -> str:
        return "SERVICEMATRIX_" + self.stem.upper()


SETTINGS = (
    Setting("backend", "where servers come from: auto, docker, local or external", "auto"),
    Setting("pg", f"PostgreSQL major version, e.g. 15 (default: {DEFAULT_PG})"),
    Setting("redis", "Redis major version, e.g. 7, or valkey-8 (default: 7)"),
    Setting("pg_url", "URL of a PostgreSQL server to use (external backend)"),
    Setting("redis_url", "URL of a Redis server to use (external backend)"),
    Setting(
        "driver",
        "which drivers tests run under: both, sync or async (default: each one installed)",
    ),
    Setting("cache_dir", "where initdb'd clusters are kept between runs"),
    Setting("tmp_dir", "where servers keep their data (default: /dev/shm if roomy, else TMPDIR)"),
    Setting("pg_image", "PostgreSQL image for the docker backend", "postgres:{version}"),
    Setting("redis_image", "Redis image for the docker backend", "redis:{version}"),
    Setting("valkey_image", "Valkey image for the docker backend", "valkey/valkey:{version}"),
    Setting("image_prefix", "registry prefix for every image, e.g. registry.example.com/mirror/"),
    Setting(
        "docker_address",
        "how tests reach containers: auto (the container's bridge address where this host "
        "routes to it, else 127.0.0.1), bridge or loopback",
        "auto",
    ),
    Setting(
        "report", "write what served the run (versions, backend, timings) as JSON to this file"
    ),
    Setting(
        "env",
        "environment variables set to the worker's servers before conftests load, e.g. "
        "DATABASE_URL={pg:postgresql+psycopg} REDIS_URL={redis}",
    ),
    Setting(
        "schema_from",
        "files the schema is made from (globs under the rootdir, e.g. migrations/**/*.py "
        "conftest.py): their hash keys a template that later workers and runs start from",
        ini_type="args",
    ),
    Setting(
        "schema_keep",
        "keep the schema template on the external server after the run: yes or no "
        "(local and docker always keep theirs)",
        "no",
    ),
    Setting(
        "warm",
        "keep the servers running after the run for the next one to reuse (local and "
        "docker; never under CI): no, yes (stopped after 15 idle minutes) or the idle minutes",
        "no",
    ),
    Setting(
        "keep_failed",
        "keep each failing test's database and Redis data, with URLs to open them after the "
        "run: yes or no (python -m servicematrix kept lists and removes them)",
        "no",
    ),
)


@dataclass(frozen=True)
class RedisVersion:
    """A Redis-compatible server: which product, which major version."""

    product: Literal["redis", "valkey"]
    major: int

    def __str__(self) -> str:
        return f"{self.product}-{self.major}"


DEFAULT_REDIS = RedisVersion("redis", 7)


@dataclass(frozen=True)
class Config:
    """What the user asked for; ``None`` means 'not asked': the default, or on the external
    backend whatever the URL's server runs."""

    backend: Backend = "auto"
    pg: int | None = None
    redis: RedisVersion | None = None
    pg_url: str | None = None
    redis_url: str | None = None
    drivers: tuple[str, ...] | None = None
    cache_dir: Path | None = None
    tmp_dir: Path | None = None
    pg_image: str = "postgres:{version}"
    redis_image: str = "redis:{version}"
    valkey_image: str = "valkey/valkey:{version}"
    image_prefix: str = ""
    docker_address: DockerAddress = "auto"
    report: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    schema_from: tuple[str, ...] = ()
    schema_keep: bool = False
    keep_failed: bool = False
    # Minutes warm servers wait for the next run before they stop; None: not kept warm.
    warm: float | None = None

    @property
    def pg_major(self) -> int:
        """The PostgreSQL major version to start."""
        return self.pg or DEFAULT_PG

    @property
    def redis_version(self) -> RedisVersion:
        """The Redis-compatible server to start."""
        return self.redis or DEFAULT_REDIS

    @classmethod
    def resolve(
        cls,
        cli: Callable[[str], str | None],
        ini: Callable[[str], str | None],
        env: Mapping[str, str],
    ) -> Config:
        """Build from the three sources; the first one that sets a value wins."""
        raw = {}
        for s in SETTINGS:
            value = cli(s.stem) or ini(s.ini) or env.get(s.env) or s.default
            raw[s.stem] = value.strip() if value else None
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: Mapping[str, str | None]) -> Config:
        """Validate raw strings; every error names the setting and a valid value."""
        backend = raw.get("backend") or "auto"
        if backend not in BACKENDS:
            raise ConfigError(_bad("backend", backend, "one of " + ", ".join(BACKENDS)))
        address = raw.get("docker_address") or "auto"
        if address not in DOCKER_ADDRESSES:
            raise ConfigError(_bad("docker_address", address, "auto, bridge or loopback"))
        driver = raw.get("driver")
        if driver not in (*DRIVERS, "both", None):
            raise ConfigError(_bad("driver", driver, "both, sync or async"))
        return cls(
            backend=backend,
            pg=_pg_version(raw.get("pg")),
            redis=_redis_version(raw.get("redis")),
            pg_url=_url(raw.get("pg_url"), "pg_url", ("postgresql", "postgres")),
            redis_url=_url(raw.get("redis_url"), "redis_url", ("redis", "rediss")),
            drivers=None if driver is None else DRIVERS if driver == "both" else (driver,),
            cache_dir=_directory(raw.get("cache_dir"), "cache_dir"),
            tmp_dir=_directory(raw.get("tmp_dir"), "tmp_dir", must_exist=True),
            pg_image=_image(raw, "pg_image"),
            redis_image=_image(raw, "redis_image"),
            valkey_image=_image(raw, "valkey_image"),
            image_prefix=raw.get("image_prefix") or "",
            docker_address=address,
            report=_report(raw.get("report")),
            env=_env(raw.get("env")),
            schema_from=tuple((raw.get("schema_from") or "").replace(",", " ").split()),
            schema_keep=_yes(raw, "schema_keep"),
            keep_failed=_yes(raw, "keep_failed"),
            warm=_warm(raw.get("warm")),
        )


def _bad(stem: str, value: str, expected: str) -> str:
    s = next(s for s in SETTINGS if s.stem == stem)
    return f"{s.cli}={value!r} is not valid: use {expected} (or set {s.ini} / {s.env})"


def _yes(raw: Mapping[str, str | None], stem: str) -> bool:
    value = (raw.get(stem) or "no").lower()
    if value not in _YES + _NO:
        raise ConfigError(_bad(stem, value, "yes or no"))
    return value in _YES


WARM_MINUTES = 15.0


def _warm(value: str | None) -> float | None:
    value = (value or "no").lower()
    if value in _NO:
        return None
    if value in _YES:
        return WARM_MINUTES
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise ConfigError(_bad("warm", value, "no, yes or a number of idle minutes, e.g. 30"))
    return minutes


def _image(raw: Mapping[str, str | None], stem: str) -> str:
    default = next(s.default for s in SETTINGS if s.stem == stem)
    value = raw.get(stem) or default or ""
    if "{version}" not in value and ":" not in value.rsplit("/", 1)[-1]:
        raise ConfigError(
            _bad(stem, value, "an image with a tag or {version}, e.g. postgres:{version}")
        )
    return value


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


# Paths are checked here, so a bad one is one usage error instead of a traceback per worker.
def _directory(value: str | None, stem: str, *, must_exist: bool = False) -> Path | None:
    path = _path(value)
    if path is None or path.is_dir() or (not must_exist and _can_be_directory(path)):
        return path
    expected = (
        "an existing directory" if must_exist else "a directory, or a path where one can be made"
    )
    raise ConfigError(_bad(stem, str(value), expected))


def _report(value: str | None) -> Path | None:
    path = _path(value)
    if path is None or (not path.is_dir() and _can_be_directory(path.parent)):
        return path
    raise ConfigError(_bad("report", str(value), "a file path in a directory that can be made"))


def _can_be_directory(path: Path) -> bool:
    """True if ``path`` is a directory or ``mkdir(parents=True)`` could make it one."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    return existing is None or existing.is_dir()


_ENV_ENTRY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _env(value: str | None) -> tuple[tuple[str, str], ...]:
    """``NAME=template`` entries, separated by white space or new lines."""
    from servicematrix.envmap import check_template

    entries = []
    for entry in (value or "").split():
        match = _ENV_ENTRY.match(entry)
        problem = check_template(match.group(2)) if match else "not NAME=VALUE"
        if match is None or problem:
            expected = f"NAME={{pg}} or NAME={{redis}} entries ({problem})"
            raise ConfigError(_bad("env", entry, expected))
        entries.append((match.group(1), match.group(2)))
    return tuple(entries)


def _pg_version(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise ConfigError(_bad("pg", value, "a major version such as 15"))
    return int(value)


def _redis_version(value: str | None) -> RedisVersion | None:
    if not value:
        return None
    match = _REDIS_VERSION.match(value.lower())
    if not match:
        raise ConfigError(_bad("redis", value, "a major version such as 7, or valkey-8"))
    product: Literal["redis", "valkey"] = "valkey" if match.group(1) == "valkey" else "redis"
    return RedisVersion(product, int(match.group(2)))


def _url(value: str | None, stem: str, schemes: tuple[str, ...]) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    # A Redis URL's path is a database index; drivers fail later, with a traceback, on others.
    path_ok = stem != "redis_url" or _REDIS_DB.match(parts.path)
    if parts.scheme.split("+")[0] not in schemes or not parts.hostname or not path_ok:
        raise ConfigError(_bad(stem, masked_url(value), _URL_EXAMPLES[stem]))
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number in range
    except ValueError:
        raise ConfigError(_bad(stem, masked_url(value), _URL_EXAMPLES[stem])) from None
    return value
