"""Per-worker provisioning, independent of pytest: one backend, the servers asked for at once."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from servicematrix.backends import Backend, WorkerContext, backend_class
from servicematrix.config import Config
from servicematrix.control import ServerControl
from servicematrix.info import ROLES, Role, ServerInfo
from servicematrix.initdb import default_cache_dir
from servicematrix.keep import Keeper, PgCopy, make_blank
from servicematrix.kept import KeptTest
from servicematrix.processes import data_root, give_to_server
from servicematrix.reaper import Reaper
from servicematrix.reset import Clone
from servicematrix.schema import ADOPTED, BUILT, REUSED, SETUP, Schema, build_lock
from servicematrix.warm import Pool, key_of, off_reason, reset_pg, reset_redis


class Worker:
    """The servers of one pytest process; started together, removed together.

    ``roles`` start at once, side by side; any other starts when first asked for.
    """

    def __init__(
        self,
        config: Config,
        backend: str,
        run_id: str,
        worker_id: str = "main",
        watch_pid: int | None = None,
        *,
        roles: Collection[Role] = ROLES,
        schema: Schema | None = None,
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
        ctx = WorkerContext(config, run_id, worker_id, reaper, workdir, schema)
        self.backend: Backend = backend_class(backend)(ctx)
        self._reaper = reaper
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="servicematrix")
        self._servers: dict[Role, Future[ServerInfo]] = {}
        self._started = started
        self.seconds: float | None = None
        self._control: ServerControl | None = None
        # How the database got its schema, and how long that took (give_schema).
        self.schema_report: dict[str, object] | None = None
        # The committed reset by clone (False: not wanted here), once asked for.
        self._clone: Clone | Literal[False] | None = None
        # Where failing tests' data is kept (keep_failed).
        self.keeper = (
            Keeper((config.cache_dir or default_cache_dir()) / "kept", run_id, worker_id, backend)
            if config.keep_failed
            else None
        )
        # Servers an earlier run left warm, taken for this one; or why none are (warm).
        self._warm: Pool | None = None
        self.warm_note: str | None = None
        if config.warm is not None:
            self.warm_note = off_reason(config, backend)
            if self.warm_note is None:
                cache = (config.cache_dir or default_cache_dir()) / "warm"
                name = f"{run_id}-{worker_id}"
                self._warm = Pool(cache, key_of(config, backend), name, config.warm)
                self.warm_note = "reused" if self._warm.take() else "started"
        self.start(roles)

    def start(self, roles: Collection[Role]) -> None:
        """Begin starting ``roles`` that are not started yet, without waiting for them."""
        for role in ROLES:
            if role in roles and role not in self._servers:
                self._servers[role] = self._pool.submit(self._serve, role)

    def _serve(self, role: Role) -> ServerInfo:
        starter = {"pg": self.backend.start_pg, "redis": self.backend.start_redis}[role]
        entry = self._warm.entry if self._warm is not None else None
        server = entry.servers.get(role) if entry is not None else None
        if entry is None or server is None:
            return starter()
        schema = self.backend.ctx.schema
        try:
            if role == "pg":
                kept = schema is not None and entry.schema == schema.key
                reset_pg(server, keep_schema=kept)
                self.backend.schema_reused = kept
            else:
                reset_redis(server)
        except Exception:  # gone meanwhile (stopped or removed by hand): start anew
            return starter()
        self.backend.warm.add(role)
        return server

    def server(self, role: Role) -> ServerInfo:
        """``role``'s server, once it accepts connections (started now if it was not)."""
        self.start([role])
        return self._servers[role].result()

    def pg(self) -> ServerInfo:
        """PostgreSQL, once it accepts connections."""
        return self.server("pg")

    def redis(self) -> ServerInfo:
        """The Redis-compatible server, once it accepts connections."""
        return self.server("redis")

    @property
    def roles(self) -> list[Role]:
        """The servers asked for so far."""
        return [role for role in ROLES if role in self._servers]

    def ready(self) -> dict[Role, ServerInfo]:
        """Every server asked for so far; records how long provisioning took."""
        servers = {role: self.server(role) for role in self.roles}
        if self.seconds is None:
            self.seconds = time.perf_counter() - self._started
        return servers

    def give_schema(self, setup: Callable[[], object]) -> None:
        """Give the database its schema once: from the template, or by calling ``setup``,
        whose result becomes the template where the project names what it is made from."""
        if self.schema_report is not None:
            return
        started = time.perf_counter()
        self.pg()
        how = self._schema_from_template(setup)
        key = self.backend.ctx.schema.key if self.backend.ctx.schema else None
        self.schema_report = {"how": how, "key": key, "seconds": time.perf_counter() - started}
        pg = self.pg()
        if self.keeper is not None:
            self.keeper.snapshot(pg, self.backend.pg_login(pg))
        elif self._warm is not None:
            make_blank(pg, self.backend.pg_login(pg))  # what the next run starts from

    @property
    def clone(self) -> Clone | None:
        """The committed reset by clone, where the schema given has many tables; asked
        for by the first committed test."""
        # Not on servers of others, tuned otherwise than measured.
        if self._clone is None and self.schema_report is not None:
            self._clone = False
            if self.backend.name != "external":
                pg, ended = self.pg(), functools.partial(self.control().ended, "pg")
                login = self.backend.pg_login(pg)
                self._clone = Clone.wanted(pg.url(), login, pg.major, ended) or False
        return self._clone or None

    def keep(self, test: str, *, pg: bool, redis: bool, workers: int = 1) -> KeptTest | None:
        """Claim where a failing ``test``'s data goes (keep_failed), before its fixtures
        reset it; ``workers`` is how many processes of the run share an external Redis."""
        if self.keeper is None or not (pg or redis):
            return None
        server = self.redis() if redis else None
        first = int(server.database) - self.backend.ctx.worker_index if server else 0
        return self.keeper.claim(test, pg, server, range(first, first + workers))

    def pg_copy(self, test: str) -> PgCopy | None:
        """The copy of a failed ``test``'s rows to make before the reset, if it is kept."""
        return self.keeper.pg_copy(test) if self.keeper is not None else None

    def keep_redis(self, test: str, server: ServerInfo) -> None:
        """Copy a failed ``test``'s Redis data before the flush, if it is kept."""
        if self.keeper is not None:
            self.keeper.copy_redis(test, server)

    def _schema_from_template(self, setup: Callable[[], object]) -> str:
        schema, backend = self.backend.ctx.schema, self.backend
        if schema is None:
            setup()
            return SETUP
        if backend.schema_reused:
            return REUSED
        if "pg" in backend.warm:  # a template is made from a server this run started
            setup()
            return SETUP
        # The first worker to get here builds the template; the others wait, then use it.
        config = backend.ctx.config
        where = f"{backend.name}-{config.pg_major}"
        with build_lock(schema, (config.cache_dir or default_cache_dir()) / "schema", where):
            found = backend.has_schema()
            if found and backend.adopt_schema():
                return ADOPTED
            if not found:
                setup()
                return BUILT if backend.keep_schema() else SETUP
        setup()  # built meanwhile, but cheaper to set up than to adopt here
        return SETUP

    def track_path(self, path: Path) -> None:
        """Remove ``path`` too when this worker ends, however it ends."""
        self._reaper.track_path(path)

    def control(self) -> ServerControl:
        """Stop, start, restart or pause this worker's servers, for fault tests."""
        if self._control is None:
            self._control = ServerControl(self.backend, self.ready())
        return self._control

    def close(self) -> None:
        """Stop the servers and remove their files, then the reaper exits."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._clone:
            self._clone.close()
        try:
            self._hand_over()
            self.backend.close()
        finally:
            self._reaper.close()

    def _hand_over(self) -> None:
        """Servers holding a failed test's data go to its record; others, where asked,
        stay warm for the next run. Both outlive this worker."""
        kept = self.keeper is not None and bool(self.keeper.record.tests)
        if not kept and self._warm is None:
            return
        servers = self.backend.release()
        entry = self._warm.entry if self._warm is not None else None
        if entry is not None:
            servers = entry.stop.merged(servers)
        if kept:
            assert self.keeper is not None
            self.keeper.close(servers)
            if self._warm is not None:
                self._warm.discard()
        elif self._warm is not None and servers is not None:
            running = {r: f.result() for r, f in self._servers.items() if _served(f)}
            schema = self.backend.ctx.schema
            made = self.schema_report is not None and schema is not None
            self._warm.give_back(running, servers, schema.key if made and schema else None)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _served(future: Future[ServerInfo]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def new_run_id() -> str:
    """Short and unique enough to tell concurrent runs apart on one host."""
    return f"{os.getpid():x}{int(time.time() * 1000) % 0xFFFFFF:06x}"
