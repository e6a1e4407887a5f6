"""Best-effort JSON cache over Redis, with sync and async twins sharing one logic.

Each operation is written once, in ``shop.cache_logic``, as a generator that
yields Redis steps and receives their replies; the twins only differ in how
they send a step (``execute_command``, or a MULTI/EXEC pipeline for a
``Transaction``, called or awaited). A Redis error, a refused connection or a
timeout ends the operation with its fallback (a miss, or ``False``) instead of
an exception: callers always have PostgreSQL. Invalidations that failed are
retried before anything else is served; ``shop.cache_logic`` says how.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from shop.cache_logic import CacheLogic, Target
from shop.redis_capabilities import Operation, RedisServer, Step, Transaction

T = TypeVar("T")

# Redis raises its own ConnectionError and TimeoutError; the rest are socket
# errors that slip through on some platforms.
UNAVAILABLE = (redis.RedisError, OSError)


def sync_client(url: str, timeout: float) -> redis.Redis:
    """A redis-py client that gives up after ``timeout`` seconds and never retries."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=redis.retry.Retry(NoBackoff(), 0),
    )


def async_client(url: str, timeout: float) -> redis.asyncio.Redis:
    """A redis.asyncio client that gives up after ``timeout`` seconds and never retries."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
    )


class CacheService:
    """Best-effort JSON cache over a sync ``redis.Redis``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.logic = CacheLogic(client)

    def get(self, key: str) -> Any:
        """The cached value, or None on a miss or when Redis is unavailable."""
        return self._run(self.logic.get_op(key), None)

    def set(self, key: str, value: Any, ttl: int = 300) -> bool:
        """Store ``value`` as JSON for ``ttl`` seconds; False when Redis is unavailable."""
        return self._run(self.logic.set_op(key, value, ttl), False)

    def refresh(self, key: str, ttl: int) -> Any:
        """The value, now kept ``ttl`` seconds more; None on a miss or when Redis is unavailable."""
        return self._run(self.logic.refresh_op(key, ttl), None)

    def take(self, key: str) -> Any:
        """The value, removed so no other caller gets it; None on a miss or when unavailable."""
        return self._run(self.logic.take_op(key), None)

    def get_fact(self, name: str, fact: str) -> Any:
        """One fact filed under ``name``; None on a miss or when Redis is unavailable."""
        return self._run(self.logic.get_fact_op(name, fact), None)

    def set_fact(self, name: str, fact: str, value: Any, ttl: int) -> bool:
        """File one fact under ``name`` for ``ttl`` seconds; False when Redis is unavailable."""
        return self._run(self.logic.set_fact_op(name, fact, value, ttl), False)

    def forget_fact(self, name: str, fact: str) -> bool:
        """Remove one fact; False when Redis is unavailable (retried later)."""
        return self._run(self.logic.invalidate_op(Target("fact", name, fact)), False)

    def delete(self, key: str) -> bool:
        """Remove ``key``; False when Redis is unavailable (retried later)."""
        return self._run(self.logic.invalidate_op(Target("key", key)), False)

    def invalidate_pattern(self, pattern: str) -> bool:
        """Remove every key matching the glob; False when Redis is unavailable."""
        return self._run(self.logic.invalidate_op(Target("pattern", pattern)), False)

    def server(self) -> RedisServer | None:
        """The server, when it answers now; None when it is unavailable."""
        return self._run(self.logic.health_op(), None)

    def _run(self, operation: Operation[T], fallback: T) -> T:
        try:
            step = next(operation)
            while True:
                step = operation.send(self._send(step))
        except StopIteration as done:
            result: T = done.value
            return result
        except UNAVAILABLE as exc:
            operation.close()
            self.logic.failed(exc)
            return fallback

    def _send(self, step: Step) -> Any:
        if isinstance(step, Transaction):
            with self.client.pipeline(transaction=True) as pipe:
                queue: Callable[..., Any] = pipe.execute_command
                for command in step.commands:
                    queue(*command)
                return pipe.execute()
        execute: Callable[..., Any] = self.client.execute_command
        return execute(*step)


class AsyncCacheService:
    """Best-effort JSON cache over a ``redis.asyncio.Redis``."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.logic = CacheLogic(client)

    async def get(self, key: str) -> Any:
        """The cached value, or None on a miss or when Redis is unavailable."""
        return await self._run(self.logic.get_op(key), None)

    async def set(self, key: str, value: Any, ttl: int = 300) -> bool:
        """Store ``value`` as JSON for ``ttl`` seconds; False when Redis is unavailable."""
        return await self._run(self.logic.set_op(key, value, ttl), False)

    async def refresh(self, key: str, ttl: int) -> Any:
        """The value, now kept ``ttl`` seconds more; None on a miss or when Redis is unavailable."""
        return await self._run(self.logic.refresh_op(key, ttl), None)

    async def take(self, key: str) -> Any:
        """The value, removed so no other caller gets it; None on a miss or when unavailable."""
        return await self._run(self.logic.take_op(key), None)

    async def get_fact(self, name: str, fact: str) -> Any:
        """One fact filed under ``name``; None on a miss or when Redis is unavailable."""
        return await self._run(self.logic.get_fact_op(name, fact), None)

    async def set_fact(self, name: str, fact: str, value: Any, ttl: int) -> bool:
        """File one fact under ``name`` for ``ttl`` seconds; False when Redis is unavailable."""
        return await self._run(self.logic.set_fact_op(name, fact, value, ttl), False)

    async def forget_fact(self, name: str, fact: str) -> bool:
        """Remove one fact; False when Redis is unavailable (retried later)."""
        return await self._run(self.logic.invalidate_op(Target("fact", name, fact)), False)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; False when Redis is unavailable (retried later)."""
        return await self._run(self.logic.invalidate_op(Target("key", key)), False)

    async def invalidate_pattern(self, pattern: str) -> bool:
        """Remove every key matching the glob; False when Redis is unavailable."""
        return await self._run(self.logic.invalidate_op(Target("pattern", pattern)), False)

    async def server(self) -> RedisServer | None:
        """The server, when it answers now; None when it is unavailable."""
        return await self._run(self.logic.health_op(), None)

    async def _run(self, operation: Operation[T], fallback: T) -> T:
        try:
            step = next(operation)
            while True:
                step = operation.send(await self._send(step))
        except StopIteration as done:
            result: T = done.value
            return result
        except UNAVAILABLE as exc:
            operation.close()
            self.logic.failed(exc)
            return fallback

    async def _send(self, step: Step) -> Any:
        if isinstance(step, Transaction):
            async with self.client.pipeline(transaction=True) as pipe:
                for command in step.commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
        execute: Callable[..., Awaitable[Any]] = self.client.execute_command
        return await execute(*step)
