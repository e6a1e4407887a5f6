import os

import app
import pytest
from sqlalchemy import text


def test_the_app_reaches_this_workers_servers(pg_server, redis_server):
    assert os.environ["DATABASE_URL"] == pg_server.url("postgresql+psycopg")
    assert os.environ["REDIS_URL"] == redis_server.url()
    assert os.environ["PGPORT"] == str(pg_server.port)
    assert app.cache.connection_pool.connection_kwargs["port"] == redis_server.port


@pytest.mark.parametrize("n", range(4))
def test_the_app_works_on_them(n):
    app.remember(f"k{n}", "v")
    assert app.cache.get(f"k{n}") == b"v"
    with app.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM seen WHERE key = :k"), {"k": f"k{n}"}).scalar()
            == 1
        )
