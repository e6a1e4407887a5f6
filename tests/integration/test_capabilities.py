"""Capability detection against what the servers themselves report, under both drivers.

The expectations come from the server in the test (``SHOW server_version_num``,
``INFO server``, whether a statement or a command is accepted), never from the
version the matrix asked for: a "redis:6" may be 6.0 or 6.2.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from shop.pg_capabilities import AsyncPgProbe, PgProbe, PgServer
from shop.repositories import (
    AsyncOrderRepository,
    AsyncUserRepository,
    OrderRepository,
    UserRepository,
)

from .conftest import for_session
from .factories import UserCreateFactory
from .support import AnyCache, accepts, cache_for, calls, knows, resolve

# Each PostgreSQL feature, and a statement that only a server with it accepts.
PG_PROBES = {
    "merge_returning": (
        "EXPLAIN MERGE INTO users USING (SELECT 1) AS s ON false "
        "WHEN NOT MATCHED THEN DO NOTHING RETURNING merge_action()"
    ),
    "uuidv7": "SELECT uuidv7()",
}
# Each Redis feature, and a command that only a server with it knows.
REDIS_PROBES = {
    "getdel": ("GETDEL", "probe:missing"),
    "getex": ("GETEX", "probe:missing"),
    "hexpire": ("HEXPIRE", "probe:missing", 60, "FIELDS", 1, "field"),
}


async def pg_server(session: Session | AsyncSession) -> PgServer:
    """What the service detected behind the session's engine."""
    return await resolve(for_session(session, PgProbe, AsyncPgProbe).check())


@contextmanager
def recorded_statements(engine: Engine | AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


async def test_postgres_is_what_it_reports(db_session: Session | AsyncSession) -> None:
    reported = (await resolve(db_session.execute(text("SHOW server_version")))).scalar_one()
    number = (await resolve(db_session.execute(text("SHOW server_version_num")))).scalar_one()

    server = await pg_server(db_session)

    assert (server.version, server.version_num) == (reported, int(number))
    for feature, probe in PG_PROBES.items():
        assert (feature in server.features) == await accepts(db_session, probe), feature


async def test_postgres_is_asked_once_per_engine(
    db_engine: Engine | AsyncEngine,
    db_session: Session | AsyncSession,
    users: UserRepository | AsyncUserRepository,
    orders: OrderRepository | AsyncOrderRepository,
) -> None:
    server = await pg_server(db_session)

    with recorded_statements(db_engine) as statements:
        data = UserCreateFactory.build()
        user, _ = await resolve(users.upsert(email=data.email, name=data.name))
        await resolve(orders.create(user_id=user.id, total=Decimal(1)))
        assert await pg_server(db_session) is server

    assert not [s for s in statements if "server_version_num" in s]
    sent = " ".join(statements)
    assert ("MERGE INTO users" in sent) == ("merge_returning" in server.features)
    assert ("ON CONFLICT" in sent) == ("merge_returning" not in server.features)
    assert ("uuidv7()" in sent) == ("uuidv7" in server.features)


async def test_redis_is_what_it_reports(cache: AnyCache, redis_client: Any) -> None:
    info = await resolve(redis_client.info("server"))
    # Valkey also reports redis_version (that of the Redis it forked from).
    product = "valkey" if info.get("server_name") == "valkey" else "redis"

    server = await resolve(cache.server())

    assert server is not None
    assert (server.product, server.version) == (product, str(info[f"{product}_version"]))
    for feature, probe in REDIS_PROBES.items():
        assert (feature in server.features) == await knows(redis_client, *probe), feature


async def test_redis_is_asked_once_per_client(
    cache: AnyCache, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await resolve(cache.server())
    sent: list[tuple[Any, ...]] = []
    send = redis_client.execute_command

    def spy(*command: Any, **options: Any) -> Any:
        sent.append(command)
        return send(*command, **options)

    # A spy on this client, not INFO commandstats: an external server is shared by workers.
    monkeypatch.setattr(redis_client, "execute_command", spy)
    # Another service on the same client shares what the first one detected.
    other = cache_for(redis_client)
    assert await resolve(other.server()) is server
    assert await resolve(other.get_fact("user:1:facts", "profile")) is None

    names = [command[0] for command in sent]
    assert names[0] == "PING"
    assert "INFO" not in names


async def test_operations_send_the_commands_of_the_detected_features(
    cache: AnyCache, redis_client: Any
) -> None:
    server = await resolve(cache.server())
    assert server is not None
    before = await resolve(redis_client.info("commandstats"))

    await resolve(cache.set("cart", "taken"))
    assert await resolve(cache.take("cart")) == "taken"
    await resolve(cache.set("cart", "kept"))
    assert await resolve(cache.refresh("cart", 60)) == "kept"
    assert await resolve(cache.set_fact("user:1:facts", "profile", "kept", ttl=60)) is True

    after = await resolve(redis_client.info("commandstats"))

    def sent(command: str) -> bool:
        return calls(after, command) > calls(before, command)

    # Counted server-wide, so other workers of an external server may add to them; but
    # they run on the same server, so they never send what it lacks either.
    has = server.features.__contains__
    assert (sent("getdel"), sent("getex")) == (has("getdel"), has("getex"))
    assert (sent("hexpire"), sent("hset")) == (has("hexpire"), has("hexpire"))
    needs_transaction = not has("getdel") or not has("getex") or has("hexpire")
    assert sent("exec") == needs_transaction


async def test_health_shows_what_the_servers_report(
    client: httpx.AsyncClient, db_session: Session | AsyncSession, redis_client: Any
) -> None:
    number = (await resolve(db_session.execute(text("SHOW server_version_num")))).scalar_one()
    info = await resolve(redis_client.info("server"))
    product = "valkey" if info.get("server_name") == "valkey" else "redis"

    body = (await client.get("/health")).json()

    postgres, redis = body["postgres"], body["redis"]
    assert (postgres["status"], postgres["product"]) == ("ok", "postgresql")
    assert int(number) // 10000 == int(postgres["version"].split(".")[0])
    assert postgres["features"] == sorted(
        [f for f, probe in PG_PROBES.items() if await accepts(db_session, probe)]
    )
    assert (redis["status"], redis["product"]) == ("ok", product)
    assert redis["version"] == str(info[f"{product}_version"])
    assert redis["features"] == sorted(
        [f for f, probe in REDIS_PROBES.items() if await knows(redis_client, *probe)]
    )
