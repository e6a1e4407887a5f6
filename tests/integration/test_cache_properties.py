"""Hypothesis properties of the cache, under both drivers.

The cache gives back exactly the JSON it was given, and refuses what it cannot
hold (keys with a lone surrogate, TTLs Redis rejects, values JSON has no form
for) before it sends or records anything.

Each example gets a fresh cache on a Redis database flushed when it ends; the
Redis client fixture carries no state from one example to the next, which is
why ``HealthCheck.function_scoped_fixture`` is suppressed.
"""

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shop.cache_logic import MAX_TTL, CacheInputError

from .properties import (
    JSON_VALUES,
    LONE_SURROGATE,
    NOT_JSON,
    PROPERTIES,
    TTLS,
    Examples,
    encodable,
    examples,
    fresh_cache,
    texts,
)
from .support import resolve

__all__ = ["examples"]  # a fixture


@PROPERTIES
@given(key=texts(), value=JSON_VALUES, ttl=TTLS)
@example(key=LONE_SURROGATE, value=1, ttl=60).via("a bad key stayed pending forever")
@example(key="k", value=1, ttl=0)
async def test_cache_round_trip_is_exact_or_refused(
    redis_client: Any, examples: Examples, key: str, value: Any, ttl: int
) -> None:
    examples["run"] += 1
    async with fresh_cache(redis_client) as cache:
        if encodable(key) and 1 <= ttl <= MAX_TTL:
            assert await resolve(cache.set(key, value, ttl)) is True
            # repr tells 1 from 1.0 and -0.0 from 0.0: exact, not merely equal
            assert repr(await resolve(cache.get(key))) == repr(value)
            assert repr(await resolve(cache.refresh(key, ttl))) == repr(value)
            assert repr(await resolve(cache.take(key))) == repr(value)
            assert await resolve(cache.delete(key)) is True
        else:
            examples["refused"] += 1
            with pytest.raises(CacheInputError):
                await resolve(cache.set(key, value, ttl))
            if not encodable(key):
                with pytest.raises(CacheInputError, match="surrogate"):
                    await resolve(cache.delete(key))
        assert await resolve(cache.get(key if encodable(key) else "k")) is None
        assert not cache.logic.pending
        assert await resolve(redis_client.dbsize()) == 0


@PROPERTIES
@given(value=NOT_JSON | st.lists(NOT_JSON, min_size=1).map(lambda v: {"nested": v}))
async def test_cache_refuses_what_json_cannot_hold(
    redis_client: Any, examples: Examples, value: Any
) -> None:
    examples["run"] += 1
    examples["refused"] += 1
    async with fresh_cache(redis_client) as cache:
        with pytest.raises(CacheInputError, match="not JSON"):
            await resolve(cache.set("key", value, 60))
        with pytest.raises(CacheInputError, match="not JSON"):
            await resolve(cache.set_fact("name", "fact", value, 60))
        assert await resolve(redis_client.dbsize()) == 0


@PROPERTIES
@given(name=texts(), fact=texts(), value=JSON_VALUES)
async def test_fact_round_trip_is_exact_or_refused(
    redis_client: Any, examples: Examples, name: str, fact: str, value: Any
) -> None:
    examples["run"] += 1
    async with fresh_cache(redis_client) as cache:
        if encodable(name) and encodable(fact):
            assert await resolve(cache.set_fact(name, fact, value, 60)) is True
            assert repr(await resolve(cache.get_fact(name, fact))) == repr(value)
            assert await resolve(cache.forget_fact(name, fact)) is True
            assert await resolve(cache.get_fact(name, fact)) is None
        else:
            examples["refused"] += 1
            with pytest.raises(CacheInputError, match="surrogate"):
                await resolve(cache.set_fact(name, fact, value, 60))
            with pytest.raises(CacheInputError, match="surrogate"):
                await resolve(cache.forget_fact(name, fact))
        assert not cache.logic.pending
        assert await resolve(redis_client.dbsize()) == 0
