"""The application factory: ``uvicorn --factory shop.main:create_app``."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from shop import cache, db
from shop.api import errors, outages, router
from shop.config import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the engine and the Redis client of the configured driver; close them at shutdown."""
    settings: Settings = app.state.settings
    url = settings.database_url
    async with AsyncExitStack() as stack:
        if db.is_async_url(url):
            async_engine = db.make_async_engine(url)
            stack.push_async_callback(async_engine.dispose)
            async_redis = cache.async_client(settings.redis_url, settings.redis_timeout)
            stack.push_async_callback(async_redis.aclose)
            app.state.sessions = db.async_sessions(async_engine)
            app.state.cache = cache.AsyncCacheService(async_redis)
        else:
            engine = db.make_sync_engine(url)
            stack.callback(engine.dispose)
            redis_client = cache.sync_client(settings.redis_url, settings.redis_timeout)
            stack.callback(redis_client.close)
            app.state.sessions = db.sync_sessions(engine)
            app.state.cache = cache.CacheService(redis_client)
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; it connects to nothing until its lifespan starts."""
    app = FastAPI(title="shop", lifespan=lifespan)
    app.state.settings = settings or Settings()
    app.include_router(router)
    outages.install(app)
    errors.install(app)
    return app
