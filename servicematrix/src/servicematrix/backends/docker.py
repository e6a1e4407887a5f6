"""The docker backend: per-worker containers through testcontainers.

Where this host routes to the engine's bridge network (a local engine on Linux), tests
connect to the containers' own bridge address and nothing is published: no userland
proxy on each round trip, nothing reachable from beyond the host. The servers then share
the network namespace of a small holder container, so a server that a test stops and
starts comes back at the same address. Elsewhere (Docker Desktop, a remote engine) ports
are published on 127.0.0.1 only. Passwords are random per worker, and every container
carries labels naming the run and the worker. The reaper removes this worker's
containers when the worker ends, however it ends; Ryuk is used as well where its image
is present.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import socket
import struct
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servicematrix.backends import engine
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
from servicematrix.info import ServerInfo, new_password, redis_identity
from servicematrix.kept import Servers
from servicematrix.processes import T, free_port, poll
from servicematrix.pull import missing

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from testcontainers.core.container import DockerContainer

# The oldest testcontainers whose API this backend uses (testcontainers_config).
TESTCONTAINERS_MIN = (4, 8)
PG_PORT = 5432
REDIS_PORT = 6379
# A probe of a server starting up, and a question to the engine, cost more than a look
# at /proc: these poll less often than the local backend does.
READY_POLL_SECONDS = 0.05
ENGINE_POLL_SECONDS = 0.01
READY_TIMEOUT = 60.0
LABEL = "io.servicematrix"
PORT_ATTEMPTS = 3
# What the engine says when the host port we chose was taken meanwhile.
_PORT_TAKEN = ("port is already allocated", "address already in use")
# Schema templates are images committed from a worker's container, its cluster kept in
# the container's own layer: moved outside a volume where the image declares one there.
SCHEMA_REPOSITORY = "servicematrix-schema"
SCHEMA_PGDATA = "/var/lib/servicematrix/pgdata"
OFFICIAL_PGDATA = "/var/lib/postgresql/data"
PASSWORD_LABEL = "io.servicematrix.password"  # noqa: S105 - a label name, no password
# Throwaway clusters: durability only costs time here.
_PG_ARGS = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]


def images(config: Config) -> dict[Role, str]:
    """The PostgreSQL and Redis image references ``config`` asks for."""
    redis = config.redis_version
    redis_template = config.valkey_image if redis.product == "valkey" else config.redis_image
    return {
        "pg": config.image_prefix + config.pg_image.format(version=config.pg_major),
        "redis": config.image_prefix + redis_template.format(version=redis.major),
    }


def _testcontainers_problem() -> str | None:
    """Why the installed testcontainers cannot serve, or None when it can."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("testcontainers")
    except PackageNotFoundError:
        return "testcontainers is not installed: pip install 'servicematrix[docker]'"
    parts = tuple(int(p) for p in re.findall(r"\d+", installed)[:2])
    if parts < TESTCONTAINERS_MIN:
        wanted = ".".join(map(str, TESTCONTAINERS_MIN))
        return (
            f"testcontainers {installed} is installed, the docker backend needs {wanted} or "
            f"newer: pip install 'testcontainers>={wanted}' (or pick another backend)"
        )
    return None


def _engine_problem() -> str | None:
    """Why no engine answers, or None."""
    problem = engine.problem()
    if problem is None:
        return None
    return (
        f"no Docker engine answers ({problem}): start one (`docker info` should "
        "answer) or set servicematrix_backend=local"
    )


class DockerBackend(Backend):
    """One PostgreSQL and one Redis container per worker, started together."""

    name = "docker"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self._containers: dict[Role, Container] = {}
        # Before any container exists: one whose start a kill cuts short is never tracked
        # by id, and the reaper then finds it by these labels.
        ctx.reaper.track_labels(self._labels())
        # What the engine tells about itself, asked by the first server that starts (in
        # its thread, not before the first test), and the holder whose network the servers
        # join with its bridge address, made then too (servers start side by side).
        self._facts_lock = threading.Lock()
        self._facts: _EngineFacts | None = None
        self._holder_lock = threading.Lock()
        self._holder: tuple[Container, str] | None = None
        # This worker's PostgreSQL, and the image its schema template is (to be) kept as.
        self._pg: ServerInfo | None = None
        self._schema_ref: str | None = None

    @classmethod
    def unavailable(cls, config: Config, roles: Collection[Role] = ROLES) -> str | None:
        return _testcontainers_problem() or _engine_problem()

    @classmethod
    def prepare(
        cls, config: Config, roles: Collection[Role], report: Callable[[str], None]
    ) -> str | None:
        """Pull the images the engine lacks, once, before any container starts."""
        from servicematrix.pull import pull_missing

        wanted = images(config)
        try:
            lacking = engine.absent([wanted[r] for r in ROLES if r in roles])
        except OSError as exc:
            return f"cannot ask {engine.host()} for images: {exc}"
        return pull_missing(lacking, report) if lacking else None

    def start_pg(self) -> ServerInfo:
        password = new_password()
        image = images(self.ctx.config)["pg"]
        env = {
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "postgres",
        }
        kept, served_by = None, image
        if self.ctx.schema is not None:
            template = self._schema_image(image)
            if template.pgdata:
                env["PGDATA"] = template.pgdata
            if template.password is not None:
                kept, served_by = template.password, template.ref
        command = ["postgres", *_PG_ARGS]
        container, host, port = self._run("pg", served_by, PG_PORT, env, command)
        pg = ServerInfo("postgresql", host, port, "postgres", password, "postgres", "", self.name)
        # A template's cluster was made with the password of the worker that built it.
        login = dataclasses.replace(pg, password=kept) if kept is not None else pg
        served = _await_answer(functools.partial(_pg_version, login), container, image)
        if kept is not None:
            set_pg_password(login.url(), password)
        self.schema_reused = kept is not None
        self._pg = pg
        return dataclasses.replace(pg, version=served)

    def has_schema(self) -> bool:
        return self._schema_image(images(self.ctx.config)["pg"]).password is not None

    def keep_schema(self) -> bool:
        import docker.errors

        schema, pg, ref = self.ctx.schema, self._pg, self._schema_ref
        assert schema is not None
        assert pg is not None
        assert ref is not None
        container = self._wrapped("pg")
        # A fast shutdown leaves a clean cluster in the container's own layer (PGDATA is
        # outside the image's volume), which the commit keeps.
        self.stop_server("pg")
        repository, tag = ref.split(":")
        try:
            container.commit(
                repository=repository, tag=tag, changes=[f"LABEL {PASSWORD_LABEL}={pg.password}"]
            )
        except docker.errors.DockerException as exc:
            raise StartupError(f"could not keep the schema as {ref}: {exc}") from exc
        finally:
            self.start_server("pg")
            _await_answer(functools.partial(_pg_version, pg), container, ref)
        self._prune_schemas()
        return True

    def _schema_image(self, image: str) -> _SchemaImage:
        """Where ``ctx.schema``'s template over ``image`` is (to be) kept, and how."""
        import docker.errors

        assert self.ctx.schema is not None
        client = engine.client()
        try:
            base = client.images.get(image)
            ref = f"{SCHEMA_REPOSITORY}:{self.ctx.schema.name}-{base.short_id[7:]}"
            self._schema_ref = ref
            try:
                password = str(client.images.get(ref).labels[PASSWORD_LABEL])
            except (docker.errors.ImageNotFound, KeyError):
                password = None
        finally:
            client.close()
        config = base.attrs.get("Config") or {}
        env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
        pgdata = env.get("PGDATA") or OFFICIAL_PGDATA
        # A volume (the official images declare one) is left out of a commit.
        in_volume = any(
            pgdata == v.rstrip("/") or pgdata.startswith(v.rstrip("/") + "/")
            for v in config.get("Volumes") or {}
        )
        return _SchemaImage(ref, password, SCHEMA_PGDATA if in_volume else None)

    def _prune_schemas(self) -> None:
        """Remove this project's schema images made from other files; those made from these
        files over another image (another version) stay."""
        import docker.errors

        assert self.ctx.schema is not None
        client = engine.client()
        try:
            for image in client.images.list(name=SCHEMA_REPOSITORY):
                for ref in image.tags:
                    # A tag is the template's name, a dash, and the base image's id.
                    if self.ctx.schema.stale(ref.split(":")[-1].rsplit("-", 1)[0]):
                        with suppress(docker.errors.APIError):  # in use by another run
                            client.images.remove(ref)
        finally:
            client.close()

    def start_redis(self) -> ServerInfo:
        import redis

        password = new_password()
        image = images(self.ctx.config)["redis"]
        command = ["--requirepass", password, "--save", "", "--appendonly", "no"]
        container, host, port = self._run("redis", image, REDIS_PORT, {}, command)
        client = redis.Redis(host=host, port=port, password=password, socket_connect_timeout=2)

        def info() -> dict[str, Any] | None:
            try:
                return client.info("server")
            except redis.RedisError:
                return None

        with client:
            server = _await_answer(info, container, image)
        product, version = redis_identity(server)
        return ServerInfo(product, host, port, "", password, 0, version, self.name)

    def release(self) -> Servers:
        found = [*self._containers.values(), *([self._holder[0]] if self._holder else [])]
        ids = [str(container.id) for container in found]
        for container_id in ids:
            self.ctx.reaper.forget_container(container_id)
        self.ctx.reaper.forget_labels()
        return Servers(containers=ids)

    def control_unavailable(self) -> str | None:
        return self.warm_problem()

    def stop_server(self, role: Role) -> None:
        wrapped = self._wrapped(role)
        self._engine_call(role, "stop", wrapped.kill, signal=STOP_SIGNALS[role].name)
        self._engine_call(role, "stop", wrapped.wait, timeout=STOP_TIMEOUT)

    def start_server(self, role: Role) -> None:
        wrapped = self._wrapped(role)
        self._engine_call(role, "start", wrapped.start)
        _await_status(wrapped, "running")

    def pause_server(self, role: Role) -> None:
        wrapped = self._wrapped(role)
        self._engine_call(role, "pause", wrapped.pause)
        _await_status(wrapped, "paused")

    def resume_server(self, role: Role) -> None:
        wrapped = self._wrapped(role)
        self._engine_call(role, "resume", wrapped.unpause)
        _await_status(wrapped, "running")

    def _wrapped(self, role: Role) -> Container:
        container = self._containers.get(role)
        if container is None:
            raise ControlError(f"{role} was not started by this worker: nothing to control")
        return container

    def _engine_call(
        self, role: Role, what: str, fn: Callable[..., object], **kwargs: object
    ) -> None:
        import docker.errors

        try:
            fn(**kwargs)
        # requests' errors (a timed-out wait) are OSErrors.
        except (docker.errors.DockerException, OSError) as exc:
            line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ControlError(f"could not {what} the {role} container: {line}") from None

    def _labels(self) -> dict[str, str]:
        return {f"{LABEL}.run": self.ctx.run_id, f"{LABEL}.worker": self.ctx.worker_id}

    def _run(
        self, role: Role, image: str, port: int, env: dict[str, str], command: list[str]
    ) -> tuple[Container, str, int]:
        """Start ``role``'s container; return it and the address tests reach it at."""
        holder = self._holder_for(image)
        if holder is not None:
            container, address = holder
            network = {"network_mode": f"container:{container.id}"}
            return self._start(role, image, env, command, kwargs=network), address, port
        return self._published(role, image, port, env, command)

    def _published(
        self, role: Role, image: str, port: int, env: dict[str, str], command: list[str]
    ) -> tuple[Container, str, int]:
        """Publish on a host port chosen here: the engine would pick a new one at each restart."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            host_port = free_port()
            # Loopback only: nothing else on the network may reach a test server.
            ports = {port: ("127.0.0.1", host_port)}
            try:
                return self._start(role, image, env, command, ports=ports), "127.0.0.1", host_port
            except _PortTakenError:
                if attempt == PORT_ATTEMPTS:
                    raise StartupError(
                        f"could not start {image}: {PORT_ATTEMPTS} host ports were taken "
                        "as it started"
                    ) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _start(
        self,
        role: Role | None,
        image: str,
        env: dict[str, str],
        command: list[str],
        *,
        kwargs: dict[str, Any] | None = None,
        ports: dict[int, tuple[str, int]] | None = None,
    ) -> Container:
        container = self._container(image, env, command).with_kwargs(
            labels=self._labels(), **(kwargs or {})
        )
        for port, binding in (ports or {}).items():
            # with_bind_ports takes no host address; docker-py, which receives this mapping,
            # takes an (address, port) pair.
            container.ports[f"{port}/tcp"] = binding  # type: ignore[assignment]
        try:
            # Ryuk would remove containers that must outlive the run for kept data.
            off = self._engine_facts().ryuk_missing or self.ctx.config.keep_failed
            with _without_ryuk(off):
                container.start()
        except Exception as exc:
            _remove_unstarted(container)
            if any(t in str(exc) for t in _PORT_TAKEN):
                raise _PortTakenError from exc
            raise StartupError(f"could not start {image}: {str(exc).splitlines()[0]}") from exc
        # docker-py's handle from here on: testcontainers built and started it.
        started = container.get_wrapped_container()
        self.ctx.reaper.track_container(str(started.id))
        if role is not None:
            self._containers[role] = started
        return started

    def _holder_for(self, image: str) -> tuple[Container, str] | None:
        """The holder container and its bridge address, started once; None off the bridge."""
        if self._engine_facts().bridge is None:
            return None
        with self._holder_lock:
            if self._holder is None:
                sleep = {"entrypoint": ["sleep"]}
                try:
                    holder = self._start(None, image, {}, ["infinity"], kwargs=sleep)
                except StartupError as exc:
                    raise StartupError(
                        f"{exc} (the network holder runs `sleep infinity` in {image}; an image "
                        "without sleep needs servicematrix_docker_address=loopback)"
                    ) from exc
                holder.reload()
                networks = holder.attrs["NetworkSettings"]["Networks"]
                self._holder = holder, str(networks["bridge"]["IPAddress"])
            return self._holder

    def _engine_facts(self) -> _EngineFacts:
        with self._facts_lock:
            if self._facts is None:
                client = engine.client()
                try:
                    config = self.ctx.config
                    self._facts = _EngineFacts(_ryuk_missing(client), _bridge_route(client, config))
                finally:
                    client.close()
            return self._facts

    def _container(self, image: str, env: dict[str, str], command: list[str]) -> DockerContainer:
        with engine.IMPORT_LOCK:
            from testcontainers.core.container import DockerContainer

        container = DockerContainer(image).with_command(command)
        for name, value in env.items():
            container.with_env(name, value)
        return container


@dataclass(frozen=True)
class _SchemaImage:
    ref: str
    # The template cluster's password where the image exists, else None.
    password: str | None
    # PGDATA for a container whose commit must keep the cluster; None where it would.
    pgdata: str | None


@dataclass(frozen=True)
class _EngineFacts:
    # Ryuk runs too where its image is present; our reaper alone otherwise (it never pulls).
    ryuk_missing: bool
    # The engine's bridge subnet where tests connect through it; None to publish on loopback.
    bridge: ipaddress.IPv4Network | None


def _remove_unstarted(container: DockerContainer) -> None:
    """Remove a container that was created but failed to start: the reaper never saw it."""
    import docker.errors

    wrapped = container.get_wrapped_container()
    if wrapped is not None:
        with suppress(docker.errors.DockerException):
            wrapped.remove(force=True, v=True)


def _pg_version(pg: ServerInfo) -> str | None:
    """The version PostgreSQL reports, or None while it does not answer."""
    import psycopg

    try:
        with psycopg.connect(pg.url(), connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return None
    return str(row[0]).split()[0] if row else None


def _await_status(wrapped: Container, status: str) -> None:
    """Poll the engine until the container reports ``status``."""

    def reached() -> bool:
        wrapped.reload()
        return bool(wrapped.status == status)

    if not poll(reached, STOP_TIMEOUT, ENGINE_POLL_SECONDS):
        raise ControlError(f"container {wrapped.short_id} is {wrapped.status}, not {status}")


def _await_answer(probe: Callable[[], T | None], container: Container, image: str) -> T:
    """Call ``probe`` until it answers; fail fast if the container exits."""

    def check() -> T | None:
        answer = probe()
        if answer is not None:
            return answer
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs().decode(errors="replace").strip().splitlines()
            raise StartupError(f"{image} exited: {logs[-1] if logs else '(no output)'}")
        return None

    answer = poll(check, READY_TIMEOUT, READY_POLL_SECONDS)
    if answer is None:
        raise StartupError(f"{image} was not ready after {READY_TIMEOUT:.0f} s")
    return answer


def _ryuk_missing(client: docker.DockerClient) -> bool:
    from testcontainers.core.config import testcontainers_config as tc

    return not tc.ryuk_disabled and bool(missing(client, [tc.ryuk_image]))


# testcontainers reads whether to start Ryuk from its process-wide config. Where its image
# is missing, it is switched off only while our own containers start, and switched back
# when the last of them has: a project's own testcontainers use in this process keeps
# its setting.
_RYUK_LOCK = threading.Lock()
_RYUK_OFF: list[bool] = []


@contextmanager
def _without_ryuk(off: bool) -> Iterator[None]:
    if not off:
        yield
        return
    from testcontainers.core.config import testcontainers_config as tc

    with _RYUK_LOCK:
        _RYUK_OFF.append(tc.ryuk_disabled)
        tc.ryuk_disabled = True
    try:
        yield
    finally:
        with _RYUK_LOCK:
            before = _RYUK_OFF.pop()
            if not _RYUK_OFF:
                tc.ryuk_disabled = before


class _PortTakenError(Exception):
    """The host port chosen for a container was taken before the engine bound it."""


def _bridge_route(client: docker.DockerClient, config: Config) -> ipaddress.IPv4Network | None:
    """The engine's bridge subnet if tests are to connect through it, else None.

    ``auto`` uses it where the engine runs on this Linux host and this host has a route to
    the subnet (not its default route): Docker Desktop and remote engines have none.
    """
    import docker.errors

    if config.docker_address == "loopback":
        return None
    local = engine.is_local()
    subnet = None
    with suppress(docker.errors.DockerException, KeyError, IndexError, ValueError):
        ipam = client.networks.get("bridge").attrs["IPAM"]["Config"]
        subnet = ipaddress.IPv4Network(next(c["Subnet"] for c in ipam if "." in c["Subnet"]))
    routed = (
        subnet is not None
        and local
        and sys.platform == "linux"
        and any(subnet.subnet_of(route) for route in _routes())
    )
    if routed:
        return subnet
    if config.docker_address == "bridge":
        where = f"the engine's bridge network {subnet}" if subnet else "no bridge network"
        raise StartupError(
            f"servicematrix_docker_address=bridge, but this host cannot route to {where}: "
            "set it to auto or loopback"
        )
    return None


def _routes() -> list[ipaddress.IPv4Network]:
    """This host's IPv4 routes other than the default one, from /proc/net/route."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return []
    routes = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or int(fields[7], 16) == 0:
            continue
        # Destination and mask are hex words in this host's byte order.
        net, mask = (socket.inet_ntoa(struct.pack("=I", int(fields[i], 16))) for i in (1, 7))
        with suppress(ValueError):
            routes.append(ipaddress.IPv4Network(f"{net}/{mask}"))
    return routes
