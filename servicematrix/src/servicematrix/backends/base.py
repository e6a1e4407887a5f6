"""The interface every backend implements."""

from __future__ import annotations

import dataclasses
import importlib.util
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from servicematrix.config import Config
from servicematrix.errors import ControlError
from servicematrix.info import ROLES, TITLES, Role, ServerInfo
from servicematrix.kept import Servers
from servicematrix.reaper import Reaper
from servicematrix.schema import Schema

__all__ = [
    "ROLES",
    "STOP_SIGNALS",
    "STOP_TIMEOUT",
    "Backend",
    "Role",
    "WorkerContext",
    "client_missing",
    "set_pg_password",
]
# How a test's stop() ends each server, on every backend: Redis as in a crash, PostgreSQL
# as in an operator's restart (fast shutdown: every session is ended, the data is kept).
STOP_SIGNALS: dict[Role, signal.Signals] = {"pg": signal.SIGINT, "redis": signal.SIGKILL}
STOP_TIMEOUT = 30.0


# The client library each server is provisioned and checked with, and the extra that has it.
_CLIENTS: dict[Role, tuple[str, str]] = {
    "pg": ("psycopg", "pg"),
    "redis": ("redis", "redis"),
}


def set_pg_password(login: str, password: str) -> None:
    """Give the user that ``login`` (a URL) logs in as the new ``password``: a cluster made
    once (cached, or in a template) has its maker's password, and each worker its own."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(login, autocommit=True, connect_timeout=5) as conn:
        user = conn.info.user
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
        conn.execute(statement.format(sql.Identifier(user), sql.Literal(password)))


def client_missing(role: Role) -> str | None:
    """Why ``role`` cannot be provisioned for lack of its client library, or None."""
    module, extra = _CLIENTS[role]
    if importlib.util.find_spec(module) is not None:
        return None
    what = TITLES[role]
    return f"{what} servers need the {module} package: pip install 'servicematrix[{extra}]'"


@dataclass(frozen=True)
class WorkerContext:
    """What a backend needs to know about the process it provisions for."""

    config: Config
    run_id: str
    worker_id: str
    reaper: Reaper
    workdir: Path
    # What this worker's database schema is made from, where the project named it.
    schema: Schema | None = None

    @property
    def worker_index(self) -> int:
        """0 for the main process and gw0, 1 for gw1, ..."""
        digits = self.worker_id.removeprefix("gw")
        return int(digits) if digits.isdigit() else 0


class Backend(ABC):
    """Provisions one PostgreSQL and one Redis-compatible server for a worker."""

    name: ClassVar[str]

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        # What a server of this backend lacks that a test may need, to show on its failure.
        self.limits: dict[Role, str] = {}
        # Set by start_pg when this worker's database came from the schema template.
        self.schema_reused = False
        # The servers taken warm from an earlier run (servicematrix.warm), not started here.
        self.warm: set[Role] = set()

    @classmethod
    @abstractmethod
    def unavailable(cls, config: Config, roles: Collection[Role] = ROLES) -> str | None:
        """Why this backend cannot serve ``roles`` as ``config`` asks, or None when it can."""

    @classmethod
    def prepare(
        cls, config: Config, roles: Collection[Role], report: Callable[[str], None]
    ) -> str | None:
        """The one explicit step before any server starts (pulling images); None, or why it
        failed. Runs once per run, where ``report`` reaches the person watching."""
        return None

    @abstractmethod
    def start_pg(self) -> ServerInfo:
        """Start (or attach to) PostgreSQL and return how to reach it."""

    @abstractmethod
    def start_redis(self) -> ServerInfo:
        """Start (or attach to) a Redis-compatible server and return how to reach it."""

    # Schema templates (servicematrix.schema): a backend that can keep one overrides all
    # three, and start_pg starts from the template where there is one.

    def has_schema(self) -> bool:
        """True if this backend keeps a template of ``ctx.schema`` this worker can use."""
        return False

    def adopt_schema(self) -> bool:
        """Replace this worker's database, started before the template existed, with the
        template; False where that would cost more than running the setup again."""
        return False

    def keep_schema(self) -> bool:
        """Keep this worker's database, just set up, as the template; False if it cannot."""
        return False

    def pg_login(self, server: ServerInfo) -> str:
        """A URL that logs in to ``server`` outside the worker's database, to create and
        drop others."""
        return dataclasses.replace(server, database="postgres").url()

    def release(self) -> Servers | None:
        """Let this worker's servers outlive it (they hold a failed test's data): the
        reaper forgets them. Returns what stops them later; None where they are not ours."""
        return None

    def close(self) -> None:  # noqa: B027 - most backends leave teardown to the reaper
        """Release what the reaper cannot (e.g. databases on a server we do not own)."""

    # Server control, for fault tests. Backends that own their servers override all four;
    # each returns once the backend sees the change (the process or container is gone,
    # frozen, or running again); servicematrix.control waits for the network to agree.

    def control_unavailable(self) -> str | None:
        """Why a test cannot stop and start this backend's servers, or None when it can."""
        return f"the {self.name} backend cannot stop or start its servers"

    def warm_problem(self) -> str | None:
        """Why servers taken warm cannot be stopped and started by a test, or None."""
        if not self.warm:
            return None
        return (
            "this run took its servers warm from an earlier one, and a test stops only "
            "servers its own run started: run fault tests with servicematrix_warm=no"
        )

    def stop_server(self, role: Role) -> None:
        """Stop ``role``: Redis dies at once (SIGKILL); PostgreSQL shuts down fast."""
        raise ControlError(self.control_unavailable() or "not supported")

    def start_server(self, role: Role) -> None:
        """Start a stopped ``role`` again on the same port, password and data."""
        raise ControlError(self.control_unavailable() or "not supported")

    def pause_server(self, role: Role) -> None:
        """Freeze ``role``: it keeps its port and data but answers nothing."""
        raise ControlError(self.control_unavailable() or "not supported")

    def resume_server(self, role: Role) -> None:
        """Let a paused ``role`` run again."""
        raise ControlError(self.control_unavailable() or "not supported")
