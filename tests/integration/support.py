"""Helpers that let one test body drive either driver, and a few test-only servers."""

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import httpx
import redis
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shop.api.deps import get_cache, get_session
from shop.cache import AsyncCacheService, CacheService
from shop.config import Settings
from shop.main import create_app

T = TypeVar("T")
AnyCache = CacheService | AsyncCacheService
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
