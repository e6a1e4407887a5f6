"""Which servers a test uses and which drivers can run it, from what is installed.

Nothing here imports a driver: ``find_spec`` answers whether one is installed, so a
sync-only project never pays for, nor gets tests of, the asyncio stack.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Awaitable, Collection, Iterable
from typing import TypeVar

from servicematrix.info import ROLES, Role

T = TypeVar("T")

DRIVERS = ("sync", "async")
# Fixtures whose servers a static look at the fixture closure does not reveal (they
# pick the driver's variant at run time), and the servers each one uses.
_DYNAMIC: dict[str, tuple[Role, ...]] = {
    "db_session": ("pg",),
    "db_engine": ("pg",),
    "redis_client": ("redis",),
}
_SERVER_FIXTURES: dict[str, Role] = {"pg_server": "pg", "redis_server": "redis"}
# What each driver needs installed, per server it talks to.
_MODULES: dict[tuple[str, Role], tuple[str, ...]] = {
    ("sync", "pg"): ("sqlalchemy", "psycopg"),
    ("async", "pg"): ("sqlalchemy", "asyncpg", "greenlet", "pytest_asyncio"),
    ("sync", "redis"): ("redis",),
    ("async", "redis"): ("redis", "pytest_asyncio"),
}
EXTRAS = {"sync": "sqlalchemy,redis", "async": "async,redis"}


def roles_used(fixturenames: Iterable[str]) -> set[Role]:
    """The servers a test with these fixtures (its whole closure) talks to."""
    found: set[Role] = set()
    for name in fixturenames:
        if name in _SERVER_FIXTURES:
            found.add(_SERVER_FIXTURES[name])
        found.update(_DYNAMIC.get(name, ()))
    return found


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing(driver: str, roles: Collection[Role], asyncio: bool) -> list[str]:
    """The packages ``driver`` lacks to talk to ``roles``; ``asyncio``: pytest-asyncio is on."""
    wanted = dict.fromkeys(m for role in ROLES if role in roles for m in _MODULES[driver, role])
    if driver == "async":
        wanted["pytest_asyncio"] = None
    return [m for m in wanted if not (asyncio if m == "pytest_asyncio" else installed(m))]


def runnable(
    asked: tuple[str, ...] | None, roles: Collection[Role], asyncio: bool
) -> tuple[str, ...]:
    """The drivers a test runs under: those asked for, else every one installed."""
    return tuple(d for d in asked or DRIVERS if asked or not missing(d, roles, asyncio))


def unavailable(driver: str, roles: Collection[Role], asyncio: bool) -> str | None:
    """Why ``driver``, asked for by name, cannot run a test that uses ``roles``."""
    lacking = missing(driver, roles, asyncio)
    if not lacking:
        return None
    extra = "pytest-asyncio and " if "pytest_asyncio" in lacking else ""
    return (
        f"driver={driver} needs {', '.join(lacking)}: pip install {extra}"
        f"'servicematrix[{EXTRAS[driver]}]', or set servicematrix_driver to the other driver"
    )


async def resolve(value: Awaitable[T] | T) -> T:
    """``value``, awaited if it is awaitable: one test body for both drivers.

    ``user = await resolve(users.create(...))`` works whether ``users`` is a sync or an
    async repository.
    """
    if inspect.isawaitable(value):
        return await value
    return value
