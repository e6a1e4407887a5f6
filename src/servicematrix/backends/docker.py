"""The docker backend: per-worker containers through testcontainers.

Ports are published on 127.0.0.1 only, passwords are random per worker, and every
container carries labels naming the run and the worker. The reaper removes this
worker's containers when the worker ends, however it ends; Ryuk is used as well
where its image is present.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from servicematrix.backends.base import Backend, WorkerContext
from servicematrix.config import Config, RedisVersion
from servicematrix.errors import StartupError
from servicematrix.info import ServerInfo, redis_identity

if TYPE_CHECKING:
    import docker

DEFAULT_PG = 17
DEFAULT_REDIS = RedisVersion("redis", 7)
PG_PORT = 5432
REDIS_PORT = 6379
POLL_SECONDS = 0.05
READY_TIMEOUT = 60.0
ENGINE_TIMEOUT = 5
PULL_TIMEOUT = 300
LABEL = "io.servicematrix"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Throwaway clusters: durability only costs time here.
_PG_ARGS = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]


def images(config: Config) -> tuple[str, str]:
    """The PostgreSQL and Redis image references ``config`` asks for."""
    redis = config.redis or DEFAULT_REDIS
    redis_template = config.valkey_image if redis.product == "valkey" else config.redis_image
    return (
        config.image_prefix + config.pg_image.format(version=config.pg or DEFAULT_PG),
        config.image_prefix + redis_template.format(version=redis.major),
    )


def _unreachable() -> str | None:
    """Why no engine answers at DOCKER_HOST, checked with a socket of our own.

    docker-py leaks its socket when the engine is missing; asking first keeps a run
    without Docker free of ResourceWarnings.
    """
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(ENGINE_TIMEOUT)
                sock.connect(parts.path)
        elif parts.scheme in ("tcp", "http", "https"):
            address = (parts.hostname or "127.0.0.1", parts.port or 2375)
            socket.create_connection(address, timeout=ENGINE_TIMEOUT).close()
    except OSError as exc:
        return f"cannot connect to {host}: {exc.strerror or exc}"
    return None


def _engine(timeout: int = ENGINE_TIMEOUT) -> docker.DockerClient:
    import docker

    client = docker.from_env(timeout=timeout)
    client.ping()
    return client


def _has_image(client: docker.DockerClient, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


class DockerBackend(Backend):
    """One PostgreSQL and one Redis container per worker, started together."""

    name = "docker"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        _configure_ryuk()

    @classmethod
    def unavailable(cls, config: Config) -> str | None:
        try:
            import docker.errors
            import testcontainers  # noqa: F401
        except ImportError:
            return "testcontainers is not installed: pip install 'servicematrix[docker]'"
        problem = _unreachable()
        client = None
        try:
            client = None if problem else _engine()
        except docker.errors.DockerException as exc:
            problem = str(exc).splitlines()[0][:120]
        if client is None:
            return (
                f"no Docker engine answers ({problem}): start one "
                "(bash ci/start-docker.sh) or use --servicematrix-backend=local"
            )
        with closing(client):
            missing = [i for i in images(config) if not _has_image(client, i)]
        if missing and config.backend == "docker":
            missing = [i for i in missing if not _pull(i)]
        if missing:
            return (
                f"image {', '.join(missing)} not present locally and not pulled: build stand-ins "
                "(bash ci/build-images.sh) or set --servicematrix-image-prefix to a registry "
                "that has them"
            )
        return None

    def start_postgres(self) -> ServerInfo:
        import psycopg

        password = secrets.token_urlsafe(18)
        image = images(self.ctx.config)[0]
        env = {
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "postgres",
        }
        container, port = self._run(image, PG_PORT, env, ["postgres", *_PG_ARGS])
        conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"

        def version() -> str | None:
            try:
                with psycopg.connect(conninfo, password=password) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
            except psycopg.OperationalError:
                return None
            return str(row[0]).split()[0] if row else None

        served = _poll(version, container, image)
        return ServerInfo(
            "postgresql", "127.0.0.1", port, "postgres", password, "postgres", served, self.name
        )

    def start_redis(self) -> ServerInfo:
        import redis

        password = secrets.token_urlsafe(18)
        image = images(self.ctx.config)[1]
        command = ["--requirepass", password, "--save", "", "--appendonly", "no"]
        container, port = self._run(image, REDIS_PORT, {}, command)
        client = redis.Redis(
            host="127.0.0.1", port=port, password=password, socket_connect_timeout=2
        )

        def info() -> dict[str, Any] | None:
            try:
                return client.info("server")
            except redis.RedisError:
                return None

        with client:
            server = _poll(info, container, image)
        product, version = redis_identity(server)
        return ServerInfo(product, "127.0.0.1", port, "", password, "0", version, self.name)

    def _run(
        self, image: str, port: int, env: dict[str, str], command: list[str]
    ) -> tuple[Any, int]:
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(image)
            .with_command(command)
            .with_kwargs(
                labels={
                    f"{LABEL}.run": self.ctx.run_id,
                    f"{LABEL}.worker": self.ctx.worker_id,
                }
            )
        )
        container.with_envs(**env)
        # Loopback only: nothing else on the network may reach a test server.
        container.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]
        try:
            container.start()
        except Exception as exc:
            raise StartupError(f"could not start {image}: {str(exc).splitlines()[0]}") from exc
        self.ctx.reaper.track_container(container.get_container_id())
        return container, int(container.get_exposed_port(port))


def _poll(probe: Any, container: Any, image: str) -> Any:
    """Call ``probe`` every POLL_SECONDS until it answers; fail fast if the container exits."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        answer = probe()
        if answer is not None:
            return answer
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            logs = wrapped.logs().decode(errors="replace").strip().splitlines()
            raise StartupError(f"{image} exited: {logs[-1] if logs else '(no output)'}")
        time.sleep(POLL_SECONDS)
    raise StartupError(f"{image} was not ready after {READY_TIMEOUT:.0f} s")


def _pull(image: str) -> bool:
    import docker.errors

    with closing(_engine(PULL_TIMEOUT)) as client:
        try:
            client.images.pull(image)
        except docker.errors.DockerException:
            return False
        return _has_image(client, image)


def _configure_ryuk() -> None:
    """Use Ryuk where its image is present; otherwise our reaper alone (it never pulls)."""
    from testcontainers.core.config import testcontainers_config as tc

    if tc.ryuk_disabled:
        return
    with closing(_engine()) as client:
        if not _has_image(client, tc.ryuk_image):
            tc.ryuk_disabled = True
