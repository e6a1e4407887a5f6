"""A small suite that keeps its servers busy for a few seconds."""

import time

import pytest


@pytest.mark.parametrize("n", range(16))
def test_round_trip(pg_server, redis_server, n):
    import psycopg
    import redis

    with psycopg.connect(pg_server.url()) as conn:
        assert conn.execute("SELECT %s::int + 1", (n,)).fetchone() == (n + 1,)
    with redis.Redis.from_url(redis_server.url()) as client:
        client.set(f"key-{n}", n)
        assert client.get(f"key-{n}") == str(n).encode()
    time.sleep(0.1)
