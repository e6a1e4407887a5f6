"""Two tables, one referencing the other, a generated column and a seeded row."""

import pytest
from sqlalchemy import create_engine

SCHEMA = """
CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE books (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_id integer NOT NULL REFERENCES authors (id),
    title text NOT NULL,
    shout text GENERATED ALWAYS AS (upper(title)) STORED
);
CREATE TABLE kinds (name text PRIMARY KEY);
INSERT INTO kinds VALUES ('seeded by the setup');
"""


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    engine = create_engine(pg_server.url("postgresql+psycopg"))
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA)
    engine.dispose()
