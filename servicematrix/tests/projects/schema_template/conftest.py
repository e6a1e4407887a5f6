"""A schema made from SQL files; every run of the setup is written down in SETUP_LOG."""

import os
import pathlib

import psycopg
import pytest

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        for migration in sorted(MIGRATIONS.glob("*.sql")):
            conn.execute(migration.read_text())
        conn.execute("CREATE TABLE IF NOT EXISTS seeded (name text)")
        conn.execute("INSERT INTO seeded VALUES ('by the setup')")
    with open(os.environ["SETUP_LOG"], "a") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\n")
