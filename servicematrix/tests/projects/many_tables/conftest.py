"""A schema of many tables, where the committed reset clones an emptied copy."""

import os

import pytest
from sqlalchemy import create_engine, text

TABLES = int(os.environ.get("MANY_TABLES", "80"))


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    engine = create_engine(pg_server.url("postgresql+psycopg"))
    with engine.begin() as conn:
        for i in range(TABLES):
            conn.execute(text(f"CREATE TABLE t{i} (id serial PRIMARY KEY, body text)"))
    engine.dispose()


@pytest.fixture(scope="session")
def held(pg_server):
    """The application's own pool, with a connection idle in it: as a service under test
    holds one, which a reset must not end."""
    engine = create_engine(pg_server.url("postgresql+psycopg"), pool_pre_ping=True)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    yield engine
    engine.dispose()
