"""Backends: where servers come from. Each returns the same ServerInfo type."""

from __future__ import annotations

from servicematrix.backends.base import Backend, WorkerContext
from servicematrix.backends.docker import DockerBackend
from servicematrix.backends.external import ExternalBackend
from servicematrix.backends.local import LocalBackend
from servicematrix.config import Config
from servicematrix.errors import UnavailableError

__all__ = ["Backend", "WorkerContext", "registry", "select_backend"]


def registry() -> dict[str, type[Backend]]:
    """Backends by name, in the order ``auto`` tries them."""
    return {b.name: b for b in (ExternalBackend, DockerBackend, LocalBackend)}


def select_backend(config: Config) -> type[Backend]:
    """The backend ``config`` names, or the first that can serve it under ``auto``."""
    backends = registry()
    # URLs name the servers to use: starting others instead would hide that they cannot be.
    urls = config.pg_url or config.redis_url
    named = "external" if config.backend == "auto" and urls else config.backend
    if named != "auto":
        chosen = backends[named]
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
