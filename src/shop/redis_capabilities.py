"""What the Redis or Valkey server can do, and the commands each feature gets.

Detection reads what the server reports in ``INFO server``, never the URL or an
image tag: a "redis:6" may be 6.0 (no GETDEL) or 6.2 (GETDEL). Valkey also
reports ``redis_version`` (7.2.4, the Redis it forked from), so its own
``server_name`` and ``valkey_version`` are read first.

Every operation here is a generator yielding steps, as in ``shop.cache``; each
feature picks its generators once, at detection, and each generator runs only
on servers that have the commands it sends.
"""

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
Command = tuple[Any, ...]


class Transaction(NamedTuple):
    """Commands sent as one MULTI ... EXEC on one connection; the reply lists their replies."""

    commands: tuple[Command, ...]


Step = Command | Transaction
Operation = Generator[Step, Any, T]

# Feature -> product -> the first version that has it. Valkey started from Redis 7.2,
# so it has every command Redis 7.2 had; hash-field expiry came to it in 9.0.
FEATURES: dict[str, dict[str, tuple[int, int]]] = {
    "getdel": {"redis": (6, 2), "valkey": (7, 2)},
    "getex": {"redis": (6, 2), "valkey": (7, 2)},
    "hexpire": {"redis": (7, 4), "valkey": (9, 0)},
}


def take_with_getdel(key: str) -> Operation[Any]:
    """GET and delete in one command."""
    return (yield ("GETDEL", key))


def take_in_transaction(key: str) -> Operation[Any]:
    """GET and DEL in one transaction, so no other client takes the value in between."""
    value, _ = yield Transaction((("GET", key), ("DEL", key)))
    return value


def refresh_with_getex(key: str, ttl: int) -> Operation[Any]:
    """GET and reset the TTL in one command."""
    return (yield ("GETEX", key, "EX", ttl))


def refresh_in_transaction(key: str, ttl: int) -> Operation[Any]:
    """GET and EXPIRE in one transaction."""
    value, _ = yield Transaction((("GET", key), ("EXPIRE", key, ttl)))
    return value


class FactsInHash:
    """All of a name's facts in one hash, each field with its own TTL (HEXPIRE)."""

    def get(self, name: str, fact: str) -> Operation[Any]:
        """HGET the field."""
        return (yield ("HGET", name, fact))

    def set(self, name: str, fact: str, raw: str, ttl: int) -> Operation[None]:
        """HSET and HEXPIRE together, so no field is ever left without its TTL."""
        yield Transaction((("HSET", name, fact, raw), ("HEXPIRE", name, ttl, "FIELDS", 1, fact)))

    def forget(self, name: str, fact: str) -> Operation[None]:
        """HDEL the field."""
        yield ("HDEL", name, fact)


class FactsInKeys:
    """Each fact in a key of its own, ``name:fact``, where hash fields cannot expire."""

    def get(self, name: str, fact: str) -> Operation[Any]:
        """GET the fact's key."""
        return (yield ("GET", f"{name}:{fact}"))

    def set(self, name: str, fact: str, raw: str, ttl: int) -> Operation[None]:
        """SET the fact's key with its TTL."""
        yield ("SET", f"{name}:{fact}", raw, "EX", ttl)

    def forget(self, name: str, fact: str) -> Operation[None]:
        """DEL the fact's key."""
        yield ("DEL", f"{name}:{fact}")


@dataclass(frozen=True)
class RedisServer:
    """A Redis or Valkey server as it described itself, and the commands chosen for it."""

    product: str
    version: str
    features: frozenset[str]
    take: Callable[[str], Operation[Any]]
    refresh: Callable[[str, int], Operation[Any]]
    facts: FactsInHash | FactsInKeys


def version_tuple(version: str) -> tuple[int, ...]:
    """(7, 2) for "7.2.4": the part the feature table compares."""
    return tuple(int(part) for part in version.split(".")[:2])


def describe(info: dict[str, Any]) -> RedisServer:
    """The server whose ``INFO server`` reply (as redis-py parses it) is ``info``."""
    product = str(info.get("server_name", "redis"))
    version = str(info.get(f"{product}_version", info["redis_version"]))
    features = frozenset(
        name
        for name, since in FEATURES.items()
        if product in since and version_tuple(version) >= since[product]
    )
    return RedisServer(
        product=product,
        version=version,
        features=features,
        take=take_with_getdel if "getdel" in features else take_in_transaction,
        refresh=refresh_with_getex if "getex" in features else refresh_in_transaction,
        facts=FactsInHash() if "hexpire" in features else FactsInKeys(),
    )
