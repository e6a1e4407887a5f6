"""Real faults for tests: stop, start, restart, pause and resume a worker's own servers.

Each call returns once a client can see the change: a stopped server refuses
connections; a started or resumed one answers a query (PostgreSQL) or PING (Redis)
on the host, port and password it had, so clients reconnect to the same URL.
Nothing here depends on pytest; the plugin's ``servicematrix_servers`` fixture
hands out the worker's ``ServerControl``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from servicematrix.backends.base import ROLES, Backend, Role
from servicematrix.errors import ControlError
from servicematrix.info import ServerInfo, role_named
from servicematrix.processes import poll

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["ROLES", "Role", "ServerControl", "State"]

State = Literal["running", "stopped", "paused"]
POLL_SECONDS = 0.02
READY_TIMEOUT = 30.0
PROBE_TIMEOUT = 2
_EPOCH_KEY = "servicematrix.pg_epoch"


class _Servers(dict[Role, ServerInfo]):
    """The servers by role; ``servers["postgres"]``, the old name, still finds PostgreSQL."""

    def __missing__(self, name: str) -> ServerInfo:
        role = role_named(name)
        if role is None or role == name:
            raise KeyError(name)
        return self[role]


class ServerControl:
    """Stops and starts one worker's PostgreSQL and Redis for real, keeping their URLs."""

    def __init__(self, backend: Backend, servers: Mapping[Role, ServerInfo]) -> None:
        self._backend = backend
        self.servers: dict[Role, ServerInfo] = _Servers(servers)
        self._states: dict[Role, State] = dict.fromkeys(self.servers, "running")
        self._epochs: dict[Role, int] = dict.fromkeys(self.servers, 0)

    def __repr__(self) -> str:
        states = ", ".join(f"{role}={state}" for role, state in self._states.items())
        return f"<ServerControl {self._backend.name}: {states}>"

    @property
    def unavailable(self) -> str | None:
        """Why these servers cannot be stopped (they are not ours), or None when they can."""
        return self._backend.control_unavailable()

    def state(self, role: Role) -> State:
        """What the last call left ``role`` in."""
        return self._states[self._known(role)]

    def epoch(self, role: Role) -> int:
        """How often ``role`` was stopped: connections made in an earlier epoch are dead."""
        return self._epochs[self._known(role)]

    def ended(self, role: Role) -> None:
        """Every connection to ``role`` made until now was ended (its database was made
        again): the pools that follow it replace theirs."""
        self._epochs[self._known(role)] += 1

    def stop(self, role: Role) -> float:
        """Stop ``role`` (Redis: SIGKILL; PostgreSQL: fast shutdown); seconds until it refuses."""
        role, started = self._begin(role, "running")
        self._epochs[role] += 1
        self._backend.stop_server(role)
        self._states[role] = "stopped"
        server = self.servers[role]
        _wait(lambda: _refuses(server), f"{role} still accepts connections after stop()")
        return time.monotonic() - started

    def start(self, role: Role) -> float:
        """Start a stopped ``role`` on its old port; seconds until it answers clients."""
        role, started = self._begin(role, "stopped")
        self._backend.start_server(role)
        self._states[role] = "running"
        self._wait_answers(role)
        return time.monotonic() - started

    def restart(self, role: Role) -> float:
        """Stop, then start ``role``; seconds it was unavailable."""
        role = self._known(role)
        return self.stop(role) + self.start(role)

    def pause(self, role: Role) -> float:
        """Freeze ``role``: connections stay open but get no answer; seconds taken."""
        role, started = self._begin(role, "running")
        self._backend.pause_server(role)
        self._states[role] = "paused"
        return time.monotonic() - started

    def resume(self, role: Role) -> float:
        """Let a paused ``role`` run again; seconds until it answers clients."""
        role, started = self._begin(role, "paused")
        self._backend.resume_server(role)
        self._states[role] = "running"
        self._wait_answers(role)
        return time.monotonic() - started

    def recover(self) -> None:
        """Bring back every server a test left stopped or paused."""
        for role, state in self._states.items():
            if state == "paused":
                self.resume(role)
            elif state == "stopped":
                self.start(role)

    def follow(self, engine: Engine | AsyncEngine) -> None:
        """Make ``engine``'s pool replace connections made before PostgreSQL last stopped.

        A counter compared at checkout, no round trip: a pooled connection that a
        restart killed is reconnected instead of handed out, at no cost otherwise.
        """
        from sqlalchemy import event, exc

        sync = getattr(engine, "sync_engine", engine)

        def stamp(_dbapi: Any, record: Any) -> None:
            record.info[_EPOCH_KEY] = self._epochs["pg"]

        def check(_dbapi: Any, record: Any, _proxy: Any) -> None:
            if record.info.get(_EPOCH_KEY) != self._epochs["pg"]:
                raise exc.DisconnectionError("PostgreSQL was stopped since this connection opened")

        event.listen(sync, "connect", stamp)
        event.listen(sync, "checkout", check)

    def _known(self, name: Role) -> Role:
        role = role_named(name)
        if role is None or role not in self._states:
            raise ControlError(f"no server called {name!r}: use one of {', '.join(ROLES)}")
        return role

    def _begin(self, name: Role, expected: State) -> tuple[Role, float]:
        """``name``'s role and the moment its change begins, if it is ``expected``."""
        reason = self.unavailable
        if reason:
            raise ControlError(reason)
        role = self._known(name)
        state = self._states[role]
        if state != expected:
            raise ControlError(f"{role} is {state}, not {expected}: nothing was changed")
        return role, time.monotonic()

    def _wait_answers(self, role: Role) -> None:
        server = self.servers[role]
        probe = _pg_answers if role == "pg" else _redis_answers
        _wait(lambda: probe(server), f"{role} does not answer on port {server.port}")


def _wait(condition: Callable[[], bool], failure: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; a ControlError after ``timeout`` seconds."""
    if not poll(condition, timeout, POLL_SECONDS):
        raise ControlError(f"{failure} ({timeout:.0f} s)")


def _refuses(server: ServerInfo) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=PROBE_TIMEOUT):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _pg_answers(server: ServerInfo) -> bool:
    import psycopg

    try:
        with psycopg.connect(server.url(), connect_timeout=PROBE_TIMEOUT) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _redis_answers(server: ServerInfo) -> bool:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries of its own: the poll is the retry, at its own pace.
    client = redis.Redis.from_url(
        server.url(),
        socket_timeout=PROBE_TIMEOUT,
        socket_connect_timeout=PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        with client:
            return bool(client.ping())
    except redis.RedisError:
        return False
