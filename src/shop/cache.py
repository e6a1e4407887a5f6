"""Best-effort JSON cache over Redis, with sync and async twins sharing one logic.

Each operation is written once, as a generator that yields Redis commands and
receives their replies; the twins only differ in how they send a command
(``client.execute_command`` called or awaited). A Redis error, a refused
connection or a timeout ends the operation with its fallback (a miss, or
``False``) instead of an exception: callers always have PostgreSQL.

Why no stale value survives an outage: an invalidation (``delete``,
``invalidate_pattern``) is first recorded as pending and only forgotten once
Redis confirmed it. While anything is pending, every read and write first
retries the pending invalidations and, if Redis still fails, reports a miss
and stores nothing. A value cached before a failed invalidation is therefore
never served again: the first operation that reaches Redis deletes it. The
record lives in this object, so it protects one process. Stored values also
carry a TTL, which bounds what no record can catch: another process, or a
read that raced a write and stored the rows it read before the commit.
"""

import json
import logging
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

T = TypeVar("T")
Command = tuple[Any, ...]
Operation = Generator[Command, Any, T]
Target = tuple[str, str]  # ("key" | "pattern", the key or glob pattern)

# Redis raises its own ConnectionError and TimeoutError; the rest are socket
# errors that slip through on some platforms.
UNAVAILABLE = (redis.RedisError, OSError)
SCAN_BATCH = 500


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


class CacheLogic:
    """The operations of both twins, as generators of Redis commands."""

    def __init__(self) -> None:
        # A fresh object per recorded invalidation: only an attempt that began
        # after it was recorded may clear it, never an older concurrent one.
        self.pending: dict[Target, object] = {}
        # The sync twin runs in worker threads; this guards compare-and-delete.
        self.lock = threading.Lock()

    def get_op(self, key: str) -> Operation[Any]:
        """GET and decode, once nothing is pending."""
        yield from self.settle_op()
        raw = yield ("GET", key)
        return None if raw is None else json.loads(raw)

    def set_op(self, key: str, value: Any, ttl: int) -> Operation[bool]:
        """SET as JSON with a TTL, once nothing is pending."""
        yield from self.settle_op()
        yield ("SET", key, json.dumps(value), "EX", ttl)
        return True

    def invalidate_op(self, target: Target) -> Operation[bool]:
        """Record the invalidation as pending, then try everything pending."""
        with self.lock:
            self.pending[target] = object()
        yield from self.settle_op()
        return True

    def settle_op(self) -> Operation[None]:
        """Carry out the pending invalidations, forgetting each once Redis confirmed it."""
        with self.lock:
            pending = list(self.pending.items())
        for target, record in pending:
            kind, name = target
            if kind == "key":
                yield ("DEL", name)
            else:
                yield from self.delete_matching_op(name)
            with self.lock:
                if self.pending.get(target) is record:
                    del self.pending[target]

    def delete_matching_op(self, pattern: str) -> Operation[None]:
        """DEL every key matching the glob pattern."""
        # SCAN walks the keyspace in batches; KEYS would block the server.
        cursor = 0
        while True:
            cursor, keys = yield ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_BATCH)
            if keys:
                yield ("DEL", *keys)
            if int(cursor) == 0:
                return

    def version_op(self) -> Operation[str | None]:
        """The server's version from INFO server."""
        info = yield ("INFO", "server")
        return str(info["redis_version"])

    def failed(self, exc: BaseException) -> None:
        """Note that an operation fell back because Redis was unavailable."""
        log.warning("Redis unavailable, cache bypassed: %s", exc)


class CacheService:
    """Best-effort JSON cache over a sync ``redis.Redis``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.logic = CacheLogic()

    def get(self, key: str) -> Any:
        """The cached value, or None on a miss or when Redis is unavailable."""
        return self._run(self.logic.get_op(key), None)

    def set(self, key: str, value: Any, ttl: int = 300) -> bool:
        """Store ``value`` as JSON for ``ttl`` seconds; False when Redis is unavailable."""
        return self._run(self.logic.set_op(key, value, ttl), False)

    def delete(self, key: str) -> bool:
        """Remove ``key``; False when Redis is unavailable (retried later)."""
        return self._run(self.logic.invalidate_op(("key", key)), False)

    def invalidate_pattern(self, pattern: str) -> bool:
        """Remove every key matching the glob; False when Redis is unavailable."""
        return self._run(self.logic.invalidate_op(("pattern", pattern)), False)

    def server_version(self) -> str | None:
        """The Redis server version, or None when it is unavailable."""
        return self._run(self.logic.version_op(), None)

    def _run(self, operation: Operation[T], fallback: T) -> T:
        execute: Callable[..., Any] = self.client.execute_command
        try:
            command = next(operation)
            while True:
                command = operation.send(execute(*command))
        except StopIteration as done:
            result: T = done.value
            return result
        except UNAVAILABLE as exc:
            operation.close()
            self.logic.failed(exc)
            return fallback


class AsyncCacheService:
    """Best-effort JSON cache over a ``redis.asyncio.Redis``."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.logic = CacheLogic()

    async def get(self, key: str) -> Any:
        """The cached value, or None on a miss or when Redis is unavailable."""
        return await self._run(self.logic.get_op(key), None)

    async def set(self, key: str, value: Any, ttl: int = 300) -> bool:
        """Store ``value`` as JSON for ``ttl`` seconds; False when Redis is unavailable."""
        return await self._run(self.logic.set_op(key, value, ttl), False)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; False when Redis is unavailable (retried later)."""
        return await self._run(self.logic.invalidate_op(("key", key)), False)

    async def invalidate_pattern(self, pattern: str) -> bool:
        """Remove every key matching the glob; False when Redis is unavailable."""
        return await self._run(self.logic.invalidate_op(("pattern", pattern)), False)

    async def server_version(self) -> str | None:
        """The Redis server version, or None when it is unavailable."""
        return await self._run(self.logic.version_op(), None)

    async def _run(self, operation: Operation[T], fallback: T) -> T:
        execute: Callable[..., Awaitable[Any]] = self.client.execute_command
        try:
            command = next(operation)
            while True:
                command = operation.send(await execute(*command))
        except StopIteration as done:
            result: T = done.value
            return result
        except UNAVAILABLE as exc:
            operation.close()
            self.logic.failed(exc)
            return fallback
