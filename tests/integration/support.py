"""Helpers that let one test body drive either driver, and a few test-only servers."""

import asyncio
import inspect
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import httpx
import redis
import uvicorn
from fastapi import FastAPI
from hypothesis import seed, settings
from sqlalchemy import Engine
from sqlalchemy import text as sql_text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from shop.api.deps import get_cache, get_session
from shop.cache import AsyncCacheService, CacheService
from shop.config import Settings
from shop.main import create_app

from .factories import ItemCreateFactory, UserCreateFactory

T = TypeVar("T")
AnyCache = CacheService | AsyncCacheService
Json = dict[str, Any]
POLL = 0.05


async def resolve(value: Awaitable[T] | T) -> T:
    """The value itself, or what it resolves to when the async driver returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


async def on_sync_session(session: Session | AsyncSession, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` with a sync Session on the session's connection, whatever the driver."""
    if isinstance(session, AsyncSession):
        return await session.run_sync(fn)
    return fn(session)


def session_on(engine: Engine | AsyncEngine) -> Session | AsyncSession:
    """A new session of the engine's driver, committing for real."""
    return AsyncSession(engine) if isinstance(engine, AsyncEngine) else Session(engine)


def in_background(fn: Callable[..., Any], /, **kwargs: Any) -> "asyncio.Future[Any]":
    """Start ``fn(**kwargs)`` without waiting for it: as a task, or in a thread when it blocks."""
    running: Awaitable[Any] = (
        fn(**kwargs) if inspect.iscoroutinefunction(fn) else asyncio.to_thread(fn, **kwargs)
    )
    return asyncio.ensure_future(running)


async def accepts(session: Session | AsyncSession, sql: str) -> bool:
    """Whether PostgreSQL runs ``sql`` without an error (in a savepoint, rolled back)."""

    def attempt(sync_session: Session) -> bool:
        savepoint = sync_session.begin_nested()
        try:
            sync_session.execute(sql_text(sql))
        except DBAPIError:
            return False
        finally:
            savepoint.rollback()
        return True

    return await on_sync_session(session, attempt)


async def knows(redis_client: Any, *command: Any) -> bool:
    """Whether the Redis server has the command: it answers, or fails in any way but unknown."""
    try:
        await resolve(redis_client.execute_command(*command))
    except redis.ResponseError as exc:
        return "unknown command" not in str(exc).lower()
    return True


def calls(commandstats: dict[str, Any], command: str) -> int:
    """How often the server ran ``command``, from INFO commandstats."""
    return int(commandstats.get(f"cmdstat_{command}", {}).get("calls", 0))


def assert_fresh_uuid7(value: str | uuid.UUID, within: float = 10.0) -> None:
    """``value`` is an RFC 9562 version-7 UUID whose timestamp is within ``within`` s of now."""
    reference = uuid.UUID(str(value))
    assert (reference.version, reference.variant) == (7, uuid.RFC_4122)
    millis = reference.int >> 80
    assert abs(millis / 1000 - time.time()) < within, f"{reference} was not made just now"


async def wait_until(condition: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    """Poll ``condition`` in short steps until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await resolve(condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {within} s")
        await asyncio.sleep(POLL)


def loopback_socket() -> socket.socket:
    """A socket bound to a free loopback port; it refuses connections until it listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class Gate:
    """A loopback port that refuses connections (a server down) until opened.

    Once opened it forwards every connection to ``target``, like a server
    coming back on the same address.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = loopback_socket()
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    def open(self) -> None:
        """Start accepting and forwarding connections."""
        self.listener.listen()
        self._spawn(self._accept)

    def close(self) -> None:
        """Stop forwarding and free every socket and thread."""
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept()
        for thread in self.threads[:1]:
            thread.join(timeout=5)  # the accept loop: no connection comes after it
        self.listener.close()
        for sock in self.sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()  # the client sees the server go away, as in an outage
                continue
            self.sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)


@asynccontextmanager
async def serve(app: Any, within: float = 15.0) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn server on a loopback port; yield its base URL."""
    sock = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        await wait_until(lambda: server.started or not thread.is_alive(), within)
        assert server.started, "uvicorn exited before it started; see the captured log"
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, within)
        sock.close()


def cache_for(client: Any) -> AnyCache:
    """The cache twin matching a redis-py or redis.asyncio client."""
    return CacheService(client) if isinstance(client, redis.Redis) else AsyncCacheService(client)


def build_app(settings: Settings, session: Session | AsyncSession, cache: AnyCache) -> FastAPI:
    """The real app, with the test's session and cache in place of its own."""
    app = create_app(settings)
    app.dependency_overrides[get_session] = lambda: session
    app.dependency_overrides[get_cache] = lambda: cache
    return app


@asynccontextmanager
async def http_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        yield client


async def create_user(client: httpx.AsyncClient) -> Json:
    """Register a fresh user through the API."""
    response = await client.post("/api/users", json=UserCreateFactory.build().model_dump())
    assert response.status_code == 201, response.text
    user: Json = response.json()
    return user


async def create_item(client: httpx.AsyncClient) -> Json:
    """Add a fresh item through the API."""
    response = await client.post("/items/", json=ItemCreateFactory.build().model_dump(mode="json"))
    assert response.status_code == 200, response.text
    item: Json = response.json()
    return item


# A matrix cell's own draw of the generated cases, set by the noxfile: SHOP_FUZZ_SEED seeds
# it and SHOP_FUZZ_SHARE is its share of the full count, so the cells together try many
# more distinct cases than one derandomized draw repeated in each. Unset (a plain pytest
# run), every run draws the same full set.
FUZZ_SEED = os.environ.get("SHOP_FUZZ_SEED")
FUZZ_SHARE = float(os.environ.get("SHOP_FUZZ_SHARE") or 1)


def share(count: int) -> int:
    """This run's number of examples where a full run has ``count``."""
    return max(1, math.ceil(count * FUZZ_SHARE))


Test = TypeVar("Test", bound=Callable[..., Any])


def drawn(base: settings, count: int) -> Callable[[Test], Test]:
    """``base`` with this run's share of ``count`` examples, drawn from this run's seed."""
    chosen = settings(base, max_examples=share(count), derandomize=FUZZ_SEED is None)

    def apply(test: Test) -> Test:
        test = chosen(test)
        return seed(int(FUZZ_SEED))(test) if FUZZ_SEED is not None else test

    return apply
