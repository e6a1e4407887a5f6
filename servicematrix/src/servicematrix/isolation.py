"""Per-test isolation: a savepoint rolled back after the test, or, after real commits,
TRUNCATE (or, for schemas of many tables, a clone of an emptied copy).

The test's session is bound to a connection whose outer transaction is never
committed; ``join_transaction_mode="create_savepoint"`` turns the code's own
commit() and rollback() into savepoint operations inside it. Rolling back the
outer transaction afterwards costs about a millisecond, against tens of
milliseconds for TRUNCATE or a fresh database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from servicematrix.reset import TRUNCATE_ALL, Clone

if TYPE_CHECKING:
    # Imported where used: SQLAlchemy's asyncio module needs greenlet, which a sync-only
    # project may not have.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


class Copy(Protocol):
    """Where a failed test's rows go before the reset (servicematrix.kept.PgCopy)."""

    @property
    def reads(self) -> list[str]: ...

    def write(self, rows: list[list[str]] | None) -> None: ...


# Asked when the test is over: the copy to make of its rows, or None (kept data only).
Keep = Callable[[], Copy | None]


@contextmanager
def rollback_session(
    engine: Engine, session_class: type[Session] = Session, keep: Keep | None = None
) -> Iterator[Session]:
    """A session (``session_class``, e.g. SQLModel's) whose every change is rolled back."""
    with engine.connect() as connection:
        outer = connection.begin()
        session = session_class(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            try:
                _keep_rows(connection, keep)
            finally:
                # One ROLLBACK ends the outer transaction and every savepoint in it;
                # closing the session afterwards sends nothing.
                outer.rollback()
                session.close()


@asynccontextmanager
async def async_rollback_session(
    engine: AsyncEngine, session_class: type[AsyncSession] | None = None, keep: Keep | None = None
) -> AsyncIterator[AsyncSession]:
    """An async session (``AsyncSession`` by default) rolled back when the block ends."""
    session_class = session_class or _async_session()
    async with engine.connect() as connection:
        outer = await connection.begin()
        session = session_class(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            try:
                await _async_keep_rows(connection, keep)
            finally:
                await outer.rollback()
                await session.close()


@contextmanager
def committed_session(
    engine: Engine,
    session_class: type[Session] = Session,
    keep: Keep | None = None,
    clone: Clone | None = None,
) -> Iterator[Session]:
    """A session that commits for real; every table is emptied afterwards, by TRUNCATE
    or, where ``clone`` is given and no one else holds the database, by ``clone``."""
    session = session_class(engine)
    try:
        yield session
    finally:
        session.close()
        try:
            _keep_committed(keep)
        finally:
            if clone is None or not clone():
                with engine.begin() as connection:
                    connection.exec_driver_sql(TRUNCATE_ALL)


@asynccontextmanager
async def async_committed_session(
    engine: AsyncEngine,
    session_class: type[AsyncSession] | None = None,
    keep: Keep | None = None,
    clone: Clone | None = None,
) -> AsyncIterator[AsyncSession]:
    """An async session that commits for real; every table is emptied afterwards."""
    session = (session_class or _async_session())(engine)
    try:
        yield session
    finally:
        await session.close()
        try:
            _keep_committed(keep)
        finally:
            if clone is None or not clone():
                async with engine.begin() as connection:
                    await connection.exec_driver_sql(TRUNCATE_ALL)


def _keep_rows(connection: Connection, keep: Keep | None) -> None:
    """Copy a failed test's rows, as its own connection sees them (uncommitted ones too),
    to where they are kept."""
    copy = keep() if keep is not None else None
    if copy is None:
        return
    rows: list[list[str]] | None
    try:
        rows = [list(connection.exec_driver_sql(read).scalars()) for read in copy.reads]
    except DBAPIError:  # its transaction failed: only what is committed is left
        rows = None
    copy.write(rows)


async def _async_keep_rows(connection: AsyncConnection, keep: Keep | None) -> None:
    copy = keep() if keep is not None else None
    if copy is None:
        return
    rows: list[list[str]] | None
    try:
        rows = [list((await connection.exec_driver_sql(read)).scalars()) for read in copy.reads]
    except DBAPIError:
        rows = None
    copy.write(rows)


def _keep_committed(keep: Keep | None) -> None:
    """Copy a failed committed test's rows: what is committed is what it left."""
    copy = keep() if keep is not None else None
    if copy is not None:
        copy.write(None)


def _async_session() -> type[AsyncSession]:
    from sqlalchemy.ext.asyncio import AsyncSession

    return AsyncSession
