import testcontainers


def test_the_projects_own_testcontainers_is_still_there():
    assert testcontainers.__name__ == "testcontainers"


def test_redis_is_served_anyway(sync_redis, redis_server):
    assert sync_redis.set("k", "v")
    assert redis_server.backend == "local"
