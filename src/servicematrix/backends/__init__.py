"""Backends: where servers come from. Each returns the same ServerInfo type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from servicematrix.config import Config
from servicematrix.errors import UnavailableError
from servicematrix.info import ServerInfo
from servicematrix.reaper import Reaper


@dataclass(frozen=True)
class WorkerContext:
    """What a backend needs to know about the process it provisions for."""

    config: Config
    run_id: str
    worker_id: str
    reaper: Reaper
    workdir: Path

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

    @classmethod
    @abstractmethod
    def unavailable(cls, config: Config) -> str | None:
        """Why this backend cannot serve ``config``, or None when it can."""

    @abstractmethod
    def start_postgres(self) -> ServerInfo:
        """Start (or attach to) PostgreSQL and return how to reach it."""

    @abstractmethod
    def start_redis(self) -> ServerInfo:
        """Start (or attach to) a Redis-compatible server and return how to reach it."""

    def close(self) -> None:  # noqa: B027 - most backends leave teardown to the reaper
        """Release what the reaper cannot (e.g. databases on a server we do not own)."""


def registry() -> dict[str, type[Backend]]:
    """Backends by name, in the order ``auto`` tries them."""
    from servicematrix.backends.external import ExternalBackend
    from servicematrix.backends.local import LocalBackend

    return {b.name: b for b in (ExternalBackend, LocalBackend)}


def select_backend(config: Config) -> type[Backend]:
    """The backend ``config`` names, or the first that can serve it under ``auto``."""
    backends = registry()
    if config.backend != "auto":
        if config.backend not in backends:
            raise UnavailableError(
                f"the {config.backend} backend is not available in this version of "
                "servicematrix: use --servicematrix-backend=local or external"
            )
        chosen = backends[config.backend]
        reason = chosen.unavailable(config)
        if reason:
            raise UnavailableError(f"{chosen.name} backend: {reason}")
        return chosen
    reasons = []
    for backend in backends.values():
        reason = backend.unavailable(config)
        if reason is None:
            return backend
        reasons.append(f"{backend.name}: {reason}")
    raise UnavailableError("no backend can serve this run; " + "; ".join(reasons))
