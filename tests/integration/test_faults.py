"""The service under real faults: this worker's Redis stopped or paused, its PostgreSQL restarted.

test_cache.py simulates an unreachable Redis with a Gate; here the real servers go
down (``servicematrix_servers``) under an app running on its own engine and Redis
client, as ``create_app(settings)`` builds them. Every test records what it saw
with ``record_property`` (fault, requests, failed, stale, outage_seconds), so a
reliability report can read the counts from the JUnit XML.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from servicematrix import ServerControl
from shop.api.outages import DETAIL
from shop.config import Settings
from shop.main import create_app, lifespan
from shop.models import Item, Order, User
from shop.schemas import ItemOut, OrderOut, UserOut, UserTotal

from .factories import ItemCreateFactory, UserCreateFactory, price
from .support import Json

# Short, so a paused Redis costs each request tens of milliseconds, not seconds; a
# reply this slow from a live Redis is only a cache miss, which the counts allow.
FAULT_REDIS_TIMEOUT = 0.05
HTTP_TIMEOUT = 10.0
Record = Callable[[str, object], None]


@dataclass
class Call:
    """One request: when it ran and how it ended."""

    started: float
    ended: float
    status: int
    body: Any


@dataclass
class Shopper:
    """Drives the API like a client would and compares each read with the database."""

    client: httpx.AsyncClient
    truth: Engine
    check: bool = True
    calls: list[Call] = field(default_factory=list)
    stale: int = 0
    users: list[Json] = field(default_factory=list)
    items: list[Json] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)

    async def request(self, method: str, url: str, json: Any = None) -> Call:
        """Send one request and record how it ended."""
        started = time.monotonic()
        response = await self.client.request(method, url, json=json)
        json_reply = response.headers.get("content-type") == "application/json"
        body = response.json() if json_reply else response.text
        call = Call(started, time.monotonic(), response.status_code, body)
        self.calls.append(call)
        return call

    async def read(self, url: str, expected: Callable[[Session], Any]) -> None:
        """GET ``url``; a 200 whose body differs from the database's truth is stale."""
        call = await self.request("GET", url)
        if self.check and call.status == 200:
            with Session(self.truth) as session:
                if call.body != expected(session):
                    self.stale += 1

    async def round(self) -> None:
        """A new user and item, each read (so cached), changed, and read again."""
        user = await self.request("POST", "/api/users", UserCreateFactory.build().model_dump())
        item = await self.request(
            "POST", "/items/", ItemCreateFactory.build().model_dump(mode="json")
        )
        self.users += [user.body] if user.status == 201 else []
        self.items += [item.body] if item.status == 200 else []
        await self.recheck()
        await self.change()
        await self.recheck()

    async def change(self) -> None:
        """Rename every known user, order for each, reprice every item: cached reads go stale."""
        for user in self.users:
            name = f"Renamed {len(self.calls)}"
            await self.request("PUT", f"/api/users/by-email/{user['email']}", {"name": name})
            order = {"user_id": user["id"], "total": str(price())}
            placed = await self.request("POST", "/api/orders", order)
            self.orders += [placed.body["reference"]] if placed.status == 201 else []
        for item in self.items:
            await self.request("PUT", f"/items/{item['id']}", {"price": str(price())})

    async def recheck(self) -> None:
        """Read every profile, total and order known so far, and the item list."""
        for uid in (user["id"] for user in self.users):
            await self.read(f"/api/users/{uid}", partial(profile, user_id=uid))
            await self.read(f"/api/users/{uid}/orders/total", partial(total, user_id=uid))
        for ref in self.orders:
            await self.read(f"/api/orders/{ref}", partial(order_of, reference=ref))
        await self.read("/items/", item_list)

    async def until(self, stop: asyncio.Event) -> None:
        """Rounds, one after the other, until ``stop`` is set."""
        while not stop.is_set():
            await self.round()

    def failures(self) -> list[Call]:
        """Every call that did not end in a 2xx."""
        return [c for c in self.calls if not 200 <= c.status < 300]


def profile(session: Session, user_id: int) -> Json:
    """The user as the API should show it."""
    return UserOut.model_validate(session.get(User, user_id)).model_dump(mode="json")


def total(session: Session, user_id: int) -> Json:
    """The user's order total as the API should show it."""
    summed = session.scalar(select(func.sum(Order.total)).where(Order.user_id == user_id))
    return UserTotal(user_id=user_id, total=summed or Decimal(0)).model_dump(mode="json")


def order_of(session: Session, reference: str) -> Json:
    """The order with ``reference`` as the API should show it."""
    order = session.scalars(select(Order).where(Order.reference == reference)).one()
    return OrderOut.model_validate(order).model_dump(mode="json")


def item_list(session: Session) -> list[Json]:
    """Every item as the API should list it."""
    items = session.scalars(select(Item).order_by(Item.id))
    return [ItemOut.model_validate(i).model_dump(mode="json") for i in items]


@pytest.fixture
async def live_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app with its own engine and Redis client, its lifespan running."""
    app = create_app(settings.model_copy(update={"redis_timeout": FAULT_REDIS_TIMEOUT}))
    # Unhandled errors become the 500 a real client would see, not exceptions here.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://shop.test", timeout=HTTP_TIMEOUT
        ) as client,
    ):
        yield client


def record_counts(
    record: Record, servers: ServerControl, fault: str, shopper: Shopper, **extra: object
) -> None:
    """What the reliability report reads from the JUnit XML."""
    record("fault", fault)
    record("backend", servers.servers["pg"].backend)
    record("requests", len(shopper.calls))
    record("failed", len(shopper.failures()))
    record("stale", shopper.stale)
    for name, value in extra.items():
        record(name, value)


@pytest.mark.committed
@pytest.mark.parametrize(
    ("fault", "down", "up"), [("stopped", "stop", "start"), ("paused", "pause", "resume")]
)
async def test_redis_outage_fails_no_request_and_serves_nothing_stale(
    db_session: Any,
    redis_client: Any,
    live_client: httpx.AsyncClient,
    sync_engine: Engine,
    record_property: Record,
    fault: str,
    down: str,
    up: str,
    servicematrix_servers: ServerControl,
) -> None:
    shopper = Shopper(live_client, sync_engine)
    await shopper.round()  # Redis now caches profiles, totals and the item list

    went_down = time.monotonic()
    getattr(servicematrix_servers, down)("redis")
    # Every cached value changes while Redis cannot be told: its invalidations fail.
    await shopper.change()
    await shopper.recheck()
    getattr(servicematrix_servers, up)("redis")
    outage = time.monotonic() - went_down
    await shopper.recheck()
    await shopper.round()

    record_counts(
        record_property,
        servicematrix_servers,
        f"redis-{fault}",
        shopper,
        outage_seconds=round(outage, 3),
    )
    assert [(c.status, c.body) for c in shopper.failures()] == []
    assert shopper.stale == 0


@pytest.mark.committed
async def test_postgres_restart_fails_few_requests_all_503_and_recovers_alone(
    db_session: Any,
    redis_client: Any,
    live_client: httpx.AsyncClient,
    sync_engine: Engine,
    record_property: Record,
    servicematrix_servers: ServerControl,
) -> None:
    shopper = Shopper(live_client, sync_engine, check=False)
    await shopper.round()  # the app's pool now holds connections the restart will kill
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(shopper.until(stop))

    down_at = time.monotonic()
    outage = await asyncio.to_thread(servicematrix_servers.restart, "pg")
    up_at = time.monotonic()
    stop.set()
    await traffic
    # Back without a manual step: every read matches the database again.
    shopper.check = True
    await shopper.round()

    failures = shopper.failures()
    failing = max((c.ended for c in failures), default=up_at) - min(
        (c.started for c in failures), default=up_at
    )
    record_counts(
        record_property,
        servicematrix_servers,
        "postgres-restart",
        shopper,
        outage_seconds=round(outage, 3),
        failing_seconds=round(failing, 3),
    )
    assert [c for c in shopper.calls if c.started < up_at and c.ended > down_at], "no fault seen"
    assert {(c.status, str(c.body)) for c in failures} <= {(503, str({"detail": DETAIL}))}
    assert all(c.started < up_at and c.ended > down_at for c in failures)
    assert shopper.stale == 0


async def test_plugin_engines_reconnect_after_a_postgres_restart(
    db_engine: Engine | AsyncEngine, servicematrix_servers: ServerControl
) -> None:
    await one(db_engine)  # a pooled connection that the restart kills

    servicematrix_servers.restart("pg")

    assert await one(db_engine) == 1


async def one(engine: Engine | AsyncEngine) -> int:
    """SELECT 1 on a pooled connection of ``engine``."""
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT 1")).scalar_one())
