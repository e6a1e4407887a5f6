"""Dependencies of the routes, as ``Annotated`` aliases.

``get_session`` and ``get_cache`` are the hooks tests override through
``app.dependency_overrides`` to hand in their own session and cache.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shop.api.driver import call
from shop.cache import AsyncCacheService, CacheService
from shop.config import Settings
from shop.pg_capabilities import AsyncPgProbe, PgProbe
from shop.repositories import (
    AsyncItemRepository,
    AsyncOrderRepository,
    AsyncUserRepository,
    ItemRepository,
    OrderRepository,
    UserRepository,
)
from shop.services import AsyncOrderService, OrderService

SyncT = TypeVar("SyncT")
AsyncT = TypeVar("AsyncT")


async def get_session(request: Request) -> AsyncIterator[Session | AsyncSession]:
    """A session of the app's driver, closed after the request."""
    session: Session | AsyncSession = request.app.state.sessions()
    try:
        yield session
    finally:
        await call(session.close)


def get_cache(request: Request) -> CacheService | AsyncCacheService:
    """The app's cache; one per app, so it remembers failed invalidations."""
    cache: CacheService | AsyncCacheService = request.app.state.cache
    return cache


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


DbSession = Annotated[Session | AsyncSession, Depends(get_session)]
Cache = Annotated[CacheService | AsyncCacheService, Depends(get_cache)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def for_driver(
    sync: Callable[[Session], SyncT], asyncio: Callable[[AsyncSession], AsyncT]
) -> Callable[[Session | AsyncSession], Awaitable[SyncT | AsyncT]]:
    """A dependency building ``sync(session)`` or ``asyncio(session)`` to match the session."""

    # async, or FastAPI would send this constructor call to a worker thread.
    async def build(session: DbSession) -> SyncT | AsyncT:
        return asyncio(session) if isinstance(session, AsyncSession) else sync(session)

    return build


Users = Annotated[
    UserRepository | AsyncUserRepository, Depends(for_driver(UserRepository, AsyncUserRepository))
]
Items = Annotated[
    ItemRepository | AsyncItemRepository, Depends(for_driver(ItemRepository, AsyncItemRepository))
]
Orders = Annotated[
    OrderRepository | AsyncOrderRepository,
    Depends(for_driver(OrderRepository, AsyncOrderRepository)),
]
PgProbes = Annotated[PgProbe | AsyncPgProbe, Depends(for_driver(PgProbe, AsyncPgProbe))]
OrderTotals = Annotated[
    OrderService | AsyncOrderService, Depends(for_driver(OrderService, AsyncOrderService))
]
