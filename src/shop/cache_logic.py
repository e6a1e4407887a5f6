"""The cache's operations, written once for both twins as generators of Redis steps.

An operation yields a step (a command, or a ``Transaction`` of commands) and
receives its reply; ``shop.cache`` sends the steps with a sync or an async
client. Commands that differ by server come from the ``RedisServer`` detected
on the client's first use, kept per client object: its connection pool reaches
one server, and every service built on the client shares the detection.

Why no stale value survives an outage: an invalidation (``delete``,
``invalidate_pattern``, ``forget_fact``) is first recorded as pending and only
forgotten once Redis confirmed it. While anything is pending, every read and
write first retries the pending invalidations and, if Redis still fails,
reports a miss and stores nothing. A value cached before a failed invalidation
is therefore never served again: the first operation that reaches Redis
deletes it. The record lives in this object, so it protects one process.
Stored values also carry a TTL, which bounds what no record can catch: another
process, or a read that raced a write and stored the rows it read before the
commit.
"""

import json
import logging
import threading
import weakref
from typing import Any, NamedTuple

from shop.redis_capabilities import Operation, RedisServer, describe

log = logging.getLogger(__name__)

SCAN_BATCH = 500
# Long enough for any cache; short enough for every server's EX and HEXPIRE.
MAX_TTL = 2**31 - 1

_detected: weakref.WeakKeyDictionary[Any, RedisServer] = weakref.WeakKeyDictionary()


class Target(NamedTuple):
    """What an invalidation removes."""

    kind: str  # "key", "pattern" or "fact"
    name: str  # the key, the glob pattern, or the name the fact is filed under
    fact: str = ""


class CacheInputError(ValueError):
    """A key, TTL or value the cache cannot take."""


def encodable(what: str, name: str) -> str:
    """``name`` if it has a UTF-8 encoding, as redis-py needs to send it."""
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        raise CacheInputError(
            f"cache {what} holds U+{ord(name[exc.start]):04X} at index {exc.start}, a lone"
            " surrogate with no UTF-8 encoding; remove it"
        ) from None
    return name


def checked_ttl(ttl: int) -> int:
    """``ttl`` if Redis takes it as a lifetime in seconds."""
    if not 1 <= ttl <= MAX_TTL:
        raise CacheInputError(f"cache TTL is {ttl} s; give 1 to {MAX_TTL} s")
    return ttl


def encoded(value: Any) -> str:
    """``value`` as strict JSON, which reads back equal; NaN and infinities have none."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CacheInputError(f"cache value is not JSON: {exc}; store JSON values only") from None


def decoded(raw: Any) -> Any:
    """The JSON value of a reply, or None for a miss."""
    return None if raw is None else json.loads(raw)


class CacheLogic:
    """The operations of both twins, as generators of Redis steps."""

    def __init__(self, client: object) -> None:
        self.client = client
        # A fresh object per recorded invalidation: only an attempt that began
        # after it was recorded may clear it, never an older concurrent one.
        self.pending: dict[Target, object] = {}
        # The sync twin runs in worker threads; this guards compare-and-delete.
        self.lock = threading.Lock()

    def server_op(self) -> Operation[RedisServer]:
        """The server behind the client, from INFO server on the client's first use."""
        server = _detected.get(self.client)
        if server is None:
            server = _detected[self.client] = describe((yield ("INFO", "server")))
        return server

    def health_op(self) -> Operation[RedisServer]:
        """PING now, so a server that went away is noticed; then describe it."""
        yield ("PING",)
        return (yield from self.server_op())

    # Each operation checks its input before its first step: a refused call sends
    # nothing and records nothing, so no bad key can stay pending and fail every later call.

    def get_op(self, key: str) -> Operation[Any]:
        """GET and decode, once nothing is pending."""
        encodable("key", key)
        yield from self.settle_op()
        return decoded((yield ("GET", key)))

    def set_op(self, key: str, value: Any, ttl: int) -> Operation[bool]:
        """SET as JSON with a TTL, once nothing is pending."""
        raw = encoded(value)
        encodable("key", key)
        checked_ttl(ttl)
        yield from self.settle_op()
        yield ("SET", key, raw, "EX", ttl)
        return True

    def refresh_op(self, key: str, ttl: int) -> Operation[Any]:
        """GET and decode, resetting the key's TTL, once nothing is pending."""
        encodable("key", key)
        checked_ttl(ttl)
        yield from self.settle_op()
        server = yield from self.server_op()
        return decoded((yield from server.refresh(key, ttl)))

    def take_op(self, key: str) -> Operation[Any]:
        """GET, decode and delete at once, so one caller only gets it, once nothing is pending."""
        encodable("key", key)
        yield from self.settle_op()
        server = yield from self.server_op()
        return decoded((yield from server.take(key)))

    def get_fact_op(self, name: str, fact: str) -> Operation[Any]:
        """One fact filed under ``name``, decoded, once nothing is pending."""
        encodable("name", name)
        encodable("fact", fact)
        yield from self.settle_op()
        server = yield from self.server_op()
        return decoded((yield from server.facts.get(name, fact)))

    def set_fact_op(self, name: str, fact: str, value: Any, ttl: int) -> Operation[bool]:
        """File one fact under ``name`` as JSON with its own TTL, once nothing is pending."""
        raw = encoded(value)
        encodable("name", name)
        encodable("fact", fact)
        checked_ttl(ttl)
        yield from self.settle_op()
        server = yield from self.server_op()
        yield from server.facts.set(name, fact, raw, ttl)
        return True

    def invalidate_op(self, target: Target) -> Operation[bool]:
        """Record the invalidation as pending, then try everything pending."""
        encodable("name" if target.kind == "fact" else target.kind, target.name)
        encodable("fact", target.fact)
        with self.lock:
            self.pending[target] = object()
        yield from self.settle_op()
        return True

    def settle_op(self) -> Operation[None]:
        """Carry out the pending invalidations, forgetting each once Redis confirmed it."""
        with self.lock:
            pending = list(self.pending.items())
        for target, record in pending:
            yield from self.remove_op(target)
            with self.lock:
                if self.pending.get(target) is record:
                    del self.pending[target]

    def remove_op(self, target: Target) -> Operation[None]:
        """Remove what the target names."""
        removers = {
            "key": self.delete_key_op,
            "pattern": self.delete_matching_op,
            "fact": self.forget_fact_op,
        }
        yield from removers[target.kind](target)

    def delete_key_op(self, target: Target) -> Operation[None]:
        """DEL the key."""
        yield ("DEL", target.name)

    def delete_matching_op(self, target: Target) -> Operation[None]:
        """DEL every key matching the glob pattern."""
        # SCAN walks the keyspace in batches; KEYS would block the server.
        cursor = 0
        while True:
            cursor, keys = yield ("SCAN", cursor, "MATCH", target.name, "COUNT", SCAN_BATCH)
            if keys:
                yield ("DEL", *keys)
            if int(cursor) == 0:
                return

    def forget_fact_op(self, target: Target) -> Operation[None]:
        """Remove one fact, the way this server files facts."""
        server = yield from self.server_op()
        yield from server.facts.forget(target.name, target.fact)

    def failed(self, exc: BaseException) -> None:
        """Note that an operation fell back because Redis was unavailable."""
        log.warning("Redis unavailable, cache bypassed: %s", exc)
