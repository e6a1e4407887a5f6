"""CacheService and AsyncCacheService against a real Redis, under both drivers."""

import json
import time
from typing import Any

import redis.asyncio

from shop.cache import SCAN_BATCH

from .factories import ItemCreateFactory
from .support import AnyCache, Gate, resolve, wait_until


def sample() -> dict[str, Any]:
    """A JSON-able value."""
    return {"items": [ItemCreateFactory.build().model_dump(mode="json")], "count": 1}


async def gone(cache: AnyCache, key: str) -> bool:
    """Whether the cache misses on ``key``."""
    return await resolve(cache.get(key)) is None


async def all_keys(redis_client: Any) -> set[bytes]:
    """Every key of the test's database, listed with SCAN: KEYS would skew the counts below."""
    if isinstance(redis_client, redis.asyncio.Redis):
        return {key async for key in redis_client.scan_iter()}
    return set(redis_client.scan_iter())


def calls(commandstats: dict[str, Any], command: str) -> int:
    """How often the server ran ``command``, from INFO commandstats."""
    return int(commandstats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_set_stores_json_and_get_returns_it(cache: AnyCache, redis_client: Any) -> None:
    value = sample()

    assert await resolve(cache.set("catalog", value)) is True

    assert await resolve(cache.get("catalog")) == value
    assert json.loads(await resolve(redis_client.get("catalog"))) == value


async def test_get_missing_key_is_none(cache: AnyCache) -> None:
    assert await resolve(cache.get("never-set")) is None


async def test_default_ttl_is_300_seconds(cache: AnyCache, redis_client: Any) -> None:
    await resolve(cache.set("catalog", sample()))

    assert 295 <= await resolve(redis_client.ttl("catalog")) <= 300


async def test_value_expires_after_its_ttl(cache: AnyCache, redis_client: Any) -> None:
    await resolve(cache.set("short", sample(), ttl=1))
    assert 0 < await resolve(redis_client.pttl("short")) <= 1000

    # Shorten the second to 50 ms: expiry is Redis's job, the test only waits for it.
    await resolve(redis_client.pexpire("short", 50))

    await wait_until(lambda: gone(cache, "short"))


async def test_delete_removes_key(cache: AnyCache) -> None:
    await resolve(cache.set("catalog", sample()))

    assert await resolve(cache.delete("catalog")) is True

    assert await resolve(cache.get("catalog")) is None


async def test_invalidate_pattern_removes_only_matching_keys(
    cache: AnyCache, redis_client: Any
) -> None:
    doomed = [f"user:1:{n}" for n in range(SCAN_BATCH * 2 + 7)]
    kept = ["user:2:profile", "user:1", "user:10:profile"]
    await resolve(redis_client.mset(dict.fromkeys(doomed + kept, "{}")))
    before = await resolve(redis_client.info("commandstats"))

    assert await resolve(cache.invalidate_pattern("user:1:*")) is True

    after = await resolve(redis_client.info("commandstats"))
    assert await all_keys(redis_client) == {k.encode() for k in kept}
    assert calls(after, "keys") == calls(before, "keys")
    assert calls(after, "scan") > calls(before, "scan")


async def test_unreachable_redis_is_a_quiet_miss(gated_cache: AnyCache) -> None:
    started = time.monotonic()

    assert await resolve(gated_cache.set("catalog", sample())) is False
    assert await resolve(gated_cache.get("catalog")) is None
    assert await resolve(gated_cache.delete("catalog")) is False
    assert await resolve(gated_cache.invalidate_pattern("user:*")) is False
    assert await resolve(gated_cache.server_version()) is None

    assert time.monotonic() - started < 2


async def test_failed_delete_is_retried_before_anything_is_served(
    gated_cache: AnyCache, redis_gate: Gate, redis_client: Any
) -> None:
    # A value cached before the outage, whose invalidation then failed.
    await resolve(redis_client.set("catalog", json.dumps("stale")))
    assert await resolve(gated_cache.delete("catalog")) is False
    assert await resolve(gated_cache.get("catalog")) is None

    redis_gate.open()

    assert await resolve(gated_cache.get("catalog")) is None
    assert await resolve(redis_client.exists("catalog")) == 0
    assert await resolve(gated_cache.set("catalog", "fresh")) is True
    assert await resolve(gated_cache.get("catalog")) == "fresh"


async def test_failed_pattern_invalidation_is_retried(
    gated_cache: AnyCache, redis_gate: Gate, redis_client: Any
) -> None:
    await resolve(redis_client.mset({"user:1:a": "1", "user:2:a": "2"}))
    assert await resolve(gated_cache.invalidate_pattern("user:1:*")) is False

    redis_gate.open()

    assert await resolve(gated_cache.get("user:2:a")) == 2
    assert await resolve(redis_client.exists("user:1:a")) == 0


async def test_server_version(cache: AnyCache) -> None:
    version = await resolve(cache.server_version())

    assert version is not None
    assert version.split(".")[0].isdigit()
