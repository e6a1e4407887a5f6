"""Two questions to the Docker engine, asked over its HTTP API without docker-py.

Whether an engine answers and whether it holds an image are asked before any test, by
runs that may never start a container; docker-py (and requests under it) costs a
quarter of a second to import, so these speak HTTP on the engine's socket themselves.
Engines behind TLS or ssh are asked through docker-py, which speaks those.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import docker

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
TIMEOUT = 5
# A worker's servers start in threads of their own. Two threads importing urllib3 (under
# docker-py and requests) at once can see it half imported, so one imports at a time.
IMPORT_LOCK = threading.Lock()


def host() -> str:
    """Where the engine is, as docker-py reads it."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def is_local() -> bool:
    """Whether the engine listens on a unix socket of this host."""
    return urlsplit(host()).scheme == "unix"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection() -> http.client.HTTPConnection | None:
    """A plain-HTTP connection to the engine, or None where it takes TLS or ssh."""
    parts = urlsplit(host())
    if parts.scheme == "unix":
        return _UnixConnection(parts.path, TIMEOUT)
    tls = os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH")
    if parts.scheme in ("tcp", "http") and not tls:
        return http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 2375, timeout=TIMEOUT
        )
    return None


def _get(path: str) -> tuple[int, bytes] | None:
    """The engine's status and body for GET ``path``; None where only docker-py can ask.

    Raises OSError when nothing answers.
    """
    connection = _connection()
    if connection is None:
        return None
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"the engine's answer was not HTTP ({type(exc).__name__})") from None
    finally:
        connection.close()


def problem() -> str | None:
    """Why no engine answers at DOCKER_HOST, or None when one does."""
    try:
        answer = _get("/_ping")
    except OSError as exc:
        return f"cannot connect to {host()}: {exc.strerror or exc}"
    if answer is None:
        return _docker_py_problem()
    status, body = answer
    if status != 200:
        return f"{host()} answered {status} to a ping: {body.decode(errors='replace')[:120]}"
    return None


def client() -> docker.DockerClient:
    """docker-py's client of the engine, once it answers a ping."""
    with IMPORT_LOCK:
        import docker

    found = docker.from_env(timeout=TIMEOUT)
    try:
        found.ping()
    except BaseException:
        found.close()
        raise
    return found


def _docker_py_problem() -> str | None:
    import docker.errors

    try:
        client().close()
    except docker.errors.DockerException as exc:
        return str(exc).splitlines()[0][:120]
    return None


def absent(images: list[str]) -> list[str]:
    """Those of ``images`` the engine does not hold (all of them where it cannot be asked
    here: whoever pulls asks again)."""
    absent = []
    for image in images:
        answer = _get(f"/images/{quote(image, safe='/:@')}/json")
        if answer is None:
            return list(images)
        if answer[0] == 404:
            absent.append(image)
        elif answer[0] != 200:
            raise OSError(f"the engine answered {answer[0]} about image {image}")
    return absent
