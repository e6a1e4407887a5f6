"""CacheService and AsyncCacheService against a real Redis, under both drivers."""

import json
import time
from typing import Any

import pytest
import redis.asyncio

from shop.cache_logic import SCAN_BATCH, Target

from .factories import ItemCreateFactory
from .support import AnyCache, Gate, calls, resolve, wait_until


def sample() -> dict[str, Any]:
    """A JSON-able value."""
    return {"items": [ItemCreateFactory.build().model_dump(mode="json")], "count": 1}


async def gone(cache: AnyCache, key: str) -> bool:
    """Whether the cache misses on ``key``."""
    return await resolve(cache.get(key)) is None


async def fact_gone(cache: AnyCache, name: str, fact: str) -> bool:
    """Whether the cache misses on one fact."""
    return await resolve(cache.get_fact(name, fact)) is None


async def all_keys(redis_client: Any) -> set[bytes]:
    """Every key of the test's database, listed with SCAN: KEYS would skew the counts below."""
    if isinstance(redis_client, redis.asyncio.Redis):
        return {key async for key in redis_client.scan_iter()}
    return set(redis_client.scan_iter())


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
    assert await resolve(gated_cache.refresh("cart", 60)) is None
    assert await resolve(gated_cache.take("cart")) is None
    assert await resolve(gated_cache.set_fact("user:1:facts", "profile", "x", ttl=60)) is False
    assert await resolve(gated_cache.get_fact("user:1:facts", "profile")) is None
    assert await resolve(gated_cache.forget_fact("user:1:facts", "profile")) is False
    assert await resolve(gated_cache.server()) is None

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


async def test_invalidating_a_pattern_that_matches_nothing(
    cache: AnyCache, redis_client: Any
) -> None:
    await resolve(redis_client.set("kept", "{}"))

    assert await resolve(cache.invalidate_pattern("nothing:*")) is True

    assert await all_keys(redis_client) == {b"kept"}


async def test_older_attempt_does_not_clear_a_newer_invalidation(
    cache: AnyCache, redis_client: Any
) -> None:
    # Two invalidations of one key, interleaved as two threads of the sync twin can be.
    target = Target("key", "catalog")
    older = cache.logic.invalidate_op(target)
    older_step = next(older)
    newer = cache.logic.invalidate_op(target)
    newer_step = next(newer)

    with pytest.raises(StopIteration):
        older.send(await resolve(redis_client.execute_command(*older_step)))

    # The newer record began after the older DEL was sent: only its own attempt may clear it.
    assert target in cache.logic.pending
    with pytest.raises(StopIteration):
        newer.send(await resolve(redis_client.execute_command(*newer_step)))
    assert target not in cache.logic.pending


async def test_refresh_returns_the_value_and_restarts_its_ttl(
    cache: AnyCache, redis_client: Any
) -> None:
    value = sample()
    await resolve(cache.set("cart", value, ttl=5))

    assert await resolve(cache.refresh("cart", 600)) == value

    assert 595 <= await resolve(redis_client.ttl("cart")) <= 600
    assert await resolve(cache.refresh("missing", 600)) is None
    assert await resolve(redis_client.exists("missing")) == 0


async def test_take_returns_the_value_once(cache: AnyCache, redis_client: Any) -> None:
    value = sample()
    await resolve(cache.set("cart", value))

    assert await resolve(cache.take("cart")) == value

    assert await resolve(cache.take("cart")) is None
    assert await resolve(redis_client.exists("cart")) == 0


async def test_facts_are_stored_and_forgotten_one_by_one(cache: AnyCache) -> None:
    profile, total = sample(), "12.50"
    assert await resolve(cache.set_fact("user:1:facts", "profile", profile, ttl=60)) is True
    assert await resolve(cache.set_fact("user:1:facts", "total", total, ttl=60)) is True

    assert await resolve(cache.get_fact("user:1:facts", "profile")) == profile
    assert await resolve(cache.forget_fact("user:1:facts", "profile")) is True

    assert await resolve(cache.get_fact("user:1:facts", "profile")) is None
    assert await resolve(cache.get_fact("user:1:facts", "total")) == total
    assert await resolve(cache.get_fact("user:2:facts", "total")) is None


async def test_each_fact_expires_after_its_own_ttl(cache: AnyCache) -> None:
    await resolve(cache.set_fact("user:1:facts", "short", "soon gone", ttl=1))
    await resolve(cache.set_fact("user:1:facts", "long", "kept", ttl=60))
    assert await resolve(cache.get_fact("user:1:facts", "short")) == "soon gone"

    # One second is the shortest TTL both layouts take; expiry is the server's job.
    await wait_until(lambda: fact_gone(cache, "user:1:facts", "short"))

    assert await resolve(cache.get_fact("user:1:facts", "long")) == "kept"


async def test_failed_fact_forget_is_retried_before_anything_is_served(
    cache: AnyCache, gated_cache: AnyCache, redis_gate: Gate
) -> None:
    await resolve(cache.set_fact("user:1:facts", "profile", "stale", ttl=60))
    assert await resolve(gated_cache.forget_fact("user:1:facts", "profile")) is False
    assert await resolve(gated_cache.get_fact("user:1:facts", "profile")) is None

    redis_gate.open()

    assert await resolve(gated_cache.get_fact("user:1:facts", "profile")) is None
    assert await resolve(cache.get_fact("user:1:facts", "profile")) is None


async def test_server_is_described(cache: AnyCache) -> None:
    server = await resolve(cache.server())

    assert server is not None
    assert server.product in {"redis", "valkey"}
    assert server.version.split(".")[0].isdigit()
