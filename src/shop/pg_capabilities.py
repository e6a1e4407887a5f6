"""What the PostgreSQL server can do, detected once per engine, and the statements it gets.

Detection reads what the server reports (``server_version_num``), never the URL
or an image tag: a "postgres:17" may be any 17.x, an external server anything.
It runs on first use and is kept per engine, since every connection of one pool
reaches the same server; two threads detecting at once only repeat a read.

Each feature picks an implementation once, at detection, so callers just run
``server.upsert_user(...)``: every server runs the same route to a statement,
and each statement builder runs only where the server has what it needs.
"""

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from shop import queries
from shop.models import Order

# Feature -> the first server_version_num that has it.
FEATURES = {
    "merge_returning": 170000,  # MERGE ... RETURNING, merge_action()
    "uuidv7": 180000,  # uuidv7() in core
}


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server as it described itself, and the statements chosen for it."""

    product: ClassVar[str] = "postgresql"
    version: str
    version_num: int
    features: frozenset[str]
    upsert_user: Callable[[str, str], queries.UserUpsert]
    insert_order: Callable[[int, Decimal], ReturningInsert[Order]]


def describe(version: str, version_num: int) -> PgServer:
    """The server with this ``server_version`` and ``server_version_num``."""
    features = frozenset(name for name, since in FEATURES.items() if version_num >= since)
    return PgServer(
        version=version,
        version_num=version_num,
        features=features,
        upsert_user=(
            queries.merge_user if "merge_returning" in features else queries.insert_user_on_conflict
        ),
        insert_order=(
            queries.insert_order_referenced_by_server
            if "uuidv7" in features
            else queries.insert_order
        ),
    )


_detected: weakref.WeakKeyDictionary[Engine, PgServer] = weakref.WeakKeyDictionary()


def engine_of(session: Session) -> Engine:
    """The engine behind a session, whether it is bound to the engine or to one connection."""
    return session.get_bind().engine


def pg_server(session: Session) -> PgServer:
    """The server behind the session's engine; asks it on the engine's first use."""
    engine = engine_of(session)
    if engine not in _detected:
        _detected[engine] = describe(*session.execute(queries.server_facts()).one())
    return _detected[engine]


async def async_pg_server(session: AsyncSession) -> PgServer:
    """The server behind the async session's engine; asks it on the engine's first use."""
    engine = engine_of(session.sync_session)
    if engine not in _detected:
        _detected[engine] = describe(*(await session.execute(queries.server_facts())).one())
    return _detected[engine]


class PgProbe:
    """Is PostgreSQL up, and what is it? Through a sync ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def check(self) -> PgServer:
        """Ask the server now (raising when it is down), then describe it."""
        self.session.execute(queries.ping())
        return pg_server(self.session)


class AsyncPgProbe:
    """Is PostgreSQL up, and what is it? Through an ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def check(self) -> PgServer:
        """Ask the server now (raising when it is down), then describe it."""
        await self.session.execute(queries.ping())
        return await async_pg_server(self.session)
