"""Per-worker provisioning, independent of pytest: one backend, both servers at once."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from servicematrix.backends import Backend, WorkerContext, registry
from servicematrix.config import Config
from servicematrix.faults import ServerControl
from servicematrix.info import ServerInfo
from servicematrix.processes import data_root, give_to_server
from servicematrix.reaper import Reaper


class Worker:
    """The servers of one pytest process; started together, removed together."""

    def __init__(
        self,
        config: Config,
        backend: str,
        run_id: str,
        worker_id: str = "main",
        watch_pid: int | None = None,
    ) -> None:
        started = time.perf_counter()
        reaper = Reaper(watch_pid)
        workdir = Path(
            tempfile.mkdtemp(
                prefix=f"servicematrix-{run_id}-{worker_id}-", dir=config.tmp_dir or data_root()
            )
        )
        reaper.track_path(workdir)
        give_to_server(workdir)
        ctx = WorkerContext(config, run_id, worker_id, reaper, workdir)
        self.backend: Backend = registry()[backend](ctx)
        self._reaper = reaper
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="servicematrix")
        self._postgres: Future[ServerInfo] = self._pool.submit(self.backend.start_postgres)
        self._redis: Future[ServerInfo] = self._pool.submit(self.backend.start_redis)
        self._started = started
        self.seconds: float | None = None
        self._control: ServerControl | None = None

    def postgres(self) -> ServerInfo:
        """PostgreSQL, once it accepts connections."""
        return self._postgres.result()

    def redis(self) -> ServerInfo:
        """The Redis-compatible server, once it accepts connections."""
        return self._redis.result()

    def ready(self) -> tuple[ServerInfo, ServerInfo]:
        """Both servers; records how long provisioning took."""
        both = self.postgres(), self.redis()
        if self.seconds is None:
            self.seconds = time.perf_counter() - self._started
        return both

    def control(self) -> ServerControl:
        """Stop, start, restart or pause this worker's servers, for fault tests."""
        if self._control is None:
            pg, redis = self.ready()
            self._control = ServerControl(self.backend, {"postgres": pg, "redis": redis})
        return self._control

    def close(self) -> None:
        """Stop the servers and remove their files, then the reaper exits."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.backend.close()
        finally:
            self._reaper.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_run_id() -> str:
    """Short and unique enough to tell concurrent runs apart on one host."""
    return f"{os.getpid():x}{int(time.time() * 1000) % 0xFFFFFF:06x}"
