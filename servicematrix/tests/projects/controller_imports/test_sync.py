from sqlalchemy import text


def test_postgres(sync_db_session, pg_server):
    assert pg_server.backend == "docker"
    assert sync_db_session.execute(text("SELECT 1")).scalar() == 1


def test_redis(sync_redis, redis_server):
    assert redis_server.backend == "docker"
    assert sync_redis.ping()
