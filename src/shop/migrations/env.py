"""Alembic environment: migrates the connection handed over by ``shop.db``."""

from alembic import context
from sqlalchemy import Connection

from shop.config import Settings
from shop.db import make_sync_engine, sync_url
from shop.models import Base


def run(connection: Connection) -> None:
    """Apply the pending migrations inside the connection's transaction."""
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("shop migrations run online only: call shop.db.migrate(DATABASE_URL).")

given: Connection | None = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    # Plain `alembic` commands (e.g. revision --autogenerate) use DATABASE_URL.
    engine = make_sync_engine(sync_url(Settings().database_url))
    with engine.begin() as connection:
        run(connection)
    engine.dispose()
