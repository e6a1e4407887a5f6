"""What the plugin's tests share: the versions they run and the inner projects' ini."""

from servicematrix.config import Config, RedisVersion

# Versions the plugin's test session can always serve: the pg16 and redis6 wheel extras.
PG = 16
REDIS = RedisVersion("redis", 6)
LOCAL = Config(backend="local", pg=PG, redis=REDIS)
INNER_INI = f"""
[pytest]
addopts = -p no:cacheprovider
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
filterwarnings = error
servicematrix_pg = {PG}
servicematrix_redis = {REDIS}
"""
