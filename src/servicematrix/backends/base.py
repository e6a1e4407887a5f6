"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from servicematrix.config import Config
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
