"""Committed tests on a schema of many tables: every table empty before each, ids
restarting, and the same engines going on after the reset, under both drivers, and
after PostgreSQL restarted.

With HOLD set, the application's own pool keeps a connection on the database; the
reset leaves it open (TRUNCATE), and the test that checks it says so."""

import os

import pytest
from sqlalchemy import text

from conftest import TABLES

HOLD = bool(os.environ.get("HOLD"))
# The database's oid after each committed test: a database made again has a new one.
oids = []


async def run(result):
    return await result if hasattr(result, "__await__") else result


@pytest.fixture(autouse=HOLD)
def app_pool(request):
    return request.getfixturevalue("held")


@pytest.mark.committed
@pytest.mark.parametrize("n", [1, 2])
async def test_committed_writes_every_table(db_session, n):
    for i in range(TABLES):
        found = await run(db_session.execute(text(f"SELECT count(*) FROM t{i}")))
        assert found.scalar() == 0, f"t{i} kept an earlier test's rows"
        insert = text(f"INSERT INTO t{i} (body) VALUES ('c') RETURNING id")
        inserted = await run(db_session.execute(insert))
        assert inserted.scalar() == 1, f"t{i}'s ids did not restart"
    await run(db_session.commit())
    oid = "SELECT oid FROM pg_database WHERE datname = current_database()"
    oids.append((await run(db_session.execute(text(oid)))).scalar())


@pytest.mark.committed
def test_committed_across_a_restart(sync_db_session, servicematrix_servers):
    servicematrix_servers.restart("pg")
    sync_db_session.execute(text("INSERT INTO t0 (body) VALUES ('r')"))
    sync_db_session.commit()


def test_after_them_every_table_is_empty(sync_db_session):
    for i in range(TABLES):
        assert sync_db_session.execute(text(f"SELECT count(*) FROM t{i}")).scalar() == 0


def test_the_database_was_made_again_unless_held(app_pool):
    assert len(oids) == 4
    if HOLD:
        # The application's connection is still there, and still works.
        with app_pool.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t0")).scalar() == 0
        assert len(set(oids)) == 1, "the database was dropped under the application's pool"
    else:
        assert len(set(oids)) == 4, "each committed test's reset made the database again"
