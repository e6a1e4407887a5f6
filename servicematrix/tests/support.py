"""What the plugin's tests share: the versions they run and the inner projects' ini."""

from importlib.metadata import version

from servicematrix.config import Config, RedisVersion

# Versions the plugin's test session can always serve: the pg16 and redis6 wheel extras.
PG = 16
REDIS = RedisVersion("redis", 6)
LOCAL = Config(backend="local", pg=PG, redis=REDIS)
# Session loops where this pytest-asyncio has the settings (0.24, 0.26); an unknown key
# would be a warning, and so an error.
_ASYNCIO = tuple(int(p) for p in version("pytest-asyncio").split(".")[:2])
_LOOPS = {"fixture": (0, 24), "test": (0, 26)}
INNER_INI = "\n".join(
    [
        "[pytest]",
        "addopts = -p no:cacheprovider",
        "asyncio_mode = auto",
        *(
            f"asyncio_default_{kind}_loop_scope = session"
            for kind, since in _LOOPS.items()
            if since <= _ASYNCIO
        ),
        "filterwarnings = error",
        f"servicematrix_pg = {PG}",
        f"servicematrix_redis = {REDIS}",
        "",
    ]
)
