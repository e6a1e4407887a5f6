"""Each test under both drivers starts from empty tables and an empty Redis; committed
tests are seen by other connections, and the tables are emptied after them."""

import pytest
from sqlalchemy import text


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    from sqlalchemy import create_engine

    engine = create_engine(pg_server.url("postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id serial PRIMARY KEY, body text)"))
    engine.dispose()


async def run(result):
    return await result if hasattr(result, "__await__") else result


@pytest.mark.parametrize("n", [1, 2])
async def test_rollback_isolation(db_session, redis_client, n):
    count = (await run(db_session.execute(text("SELECT count(*) FROM notes")))).scalar()
    assert count == 0
    assert await run(redis_client.dbsize()) == 0
    # An id of its own: a rolled-back insert still uses up a value of the sequence, and
    # the test of restarting ids below may run after this one on the same worker.
    await run(db_session.execute(text("INSERT INTO notes (id, body) VALUES (0, 'x')")))
    await run(db_session.commit())
    await run(redis_client.set("k", "v"))


@pytest.mark.committed
async def test_committed_is_seen_by_other_connections(db_session, db_engine, driver):
    await run(db_session.execute(text("INSERT INTO notes (body) VALUES ('c')")))
    await run(db_session.commit())
    if driver == "sync":
        with db_engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM notes")).scalar() == 1
    else:
        async with db_engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM notes"))).scalar() == 1


def test_after_committed_tables_are_emptied_and_ids_restart(sync_db_session):
    assert sync_db_session.execute(text("SELECT count(*) FROM notes")).scalar() == 0
    new_id = sync_db_session.execute(text("INSERT INTO notes (body) VALUES ('n') RETURNING id"))
    assert new_id.scalar() == 1
