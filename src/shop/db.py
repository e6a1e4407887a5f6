"""Engines, session factories and migrations, for both drivers.

Nothing here connects at import time: callers build engines from a URL when
they need them (the app does so in its lifespan) and dispose of them after.
"""

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker


def is_async_url(url: str) -> bool:
    """Whether the URL names an asyncio driver, such as ``postgresql+asyncpg``."""
    return bool(make_url(url).get_dialect().is_async)


def sync_url(url: str) -> str:
    """The same database through psycopg, for work that needs a sync connection."""
    if not is_async_url(url):
        return url
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def make_sync_engine(url: str) -> Engine:
    """An engine for a sync URL (``postgresql+psycopg://``)."""
    return create_engine(url, pool_pre_ping=True)


def make_async_engine(url: str) -> AsyncEngine:
    """An engine for an async URL (``postgresql+asyncpg://``)."""
    return create_async_engine(url, pool_pre_ping=True)


def sync_sessions(engine: Engine) -> sessionmaker[Session]:
    """Session factory; objects stay readable after commit, as API responses need."""
    return sessionmaker(engine, expire_on_commit=False)


def async_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """AsyncSession factory; objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped in this package.

    New revisions: ``command.revision(alembic_config(), autogenerate=True,
    message=...)`` with DATABASE_URL naming a migrated database.
    """
    config = Config()
    config.set_main_option("script_location", "shop:migrations")
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Run ``alembic upgrade head`` on an open sync connection, in its transaction."""
    command.upgrade(alembic_config(connection), "head")


def migrate(url: str) -> None:
    """Bring the database at ``url`` (either driver) to the latest schema and commit."""
    # Alembic runs sync; for an asyncpg URL, psycopg migrates the same database.
    engine = make_sync_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            upgrade_to_head(connection)
    finally:
        engine.dispose()
