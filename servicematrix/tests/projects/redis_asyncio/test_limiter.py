import asyncio

import pytest
from limiter import allow


@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(4))
async def test_every_test_starts_with_an_empty_database(async_redis, n):
    assert await async_redis.dbsize() == 0
    assert [await allow(async_redis, "user:1", limit=2) for _ in range(3)] == [True, True, False]


@pytest.mark.asyncio
async def test_the_client_lives_on_this_tests_loop(async_redis):
    await asyncio.gather(*(async_redis.incr("n") for _ in range(10)))
    assert int(await async_redis.get("n")) == 10


def test_sync_clients_share_the_server(sync_redis, redis_server):
    assert sync_redis.ping()
    assert isinstance(redis_server.database, int)
