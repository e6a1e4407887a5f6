"""Tests that fail on purpose after writing, each naming its rows and keys by its own id.

The outer test opens what was kept from the printed URLs and finds each test's data.
"""

import pytest
from sqlalchemy import text


async def run(result):
    return await result if hasattr(result, "__await__") else result


async def write(request, db_session, redis_client):
    test = request.node.nodeid
    author = await run(
        db_session.execute(text("INSERT INTO authors (name) VALUES (:t) RETURNING id"), {"t": test})
    )
    author_id = author.scalar()
    await run(
        db_session.execute(
            text("INSERT INTO books (author_id, title) VALUES (:a, :t)"),
            {"a": author_id, "t": test},
        )
    )
    await run(db_session.commit())
    await run(redis_client.set("test", test, ex=600))
    await run(redis_client.rpush("steps", "wrote", "failed"))


async def test_fails_after_writing(request, db_session, redis_client):
    await write(request, db_session, redis_client)
    # Written after the commit, never committed: kept all the same.
    await run(db_session.execute(text("INSERT INTO kinds VALUES (:t)"), {"t": request.node.nodeid}))
    pytest.fail("on purpose")


@pytest.mark.committed
async def test_fails_after_committing(request, db_session, redis_client):
    await write(request, db_session, redis_client)
    pytest.fail("on purpose")


async def test_passes(request, db_session, redis_client):
    await write(request, db_session, redis_client)
