"""Alembic environment: migrates the database at the ``sqlalchemy.url`` conftest.py sets."""

from alembic import context
from sqlalchemy import create_engine

url = context.config.get_main_option("sqlalchemy.url")
if url is None:
    raise SystemExit("these migrations run from conftest.py, which sets sqlalchemy.url")
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
