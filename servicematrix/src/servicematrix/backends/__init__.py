"""Backends: where servers come from. Each returns the same ServerInfo type."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from servicematrix.backends.base import Backend, WorkerContext, client_missing
from servicematrix.backends.docker import DockerBackend
from servicematrix.backends.external import ExternalBackend
from servicematrix.backends.local import LocalBackend
from servicematrix.config import Config
from servicematrix.errors import UnavailableError
from servicematrix.info import ROLES, Role

__all__ = ["Backend", "Choice", "WorkerContext", "registry", "select_backend"]


def registry() -> dict[str, type[Backend]]:
    """Backends by name, in the order ``auto`` tries them."""
    return {b.name: b for b in (ExternalBackend, DockerBackend, LocalBackend)}


@dataclass(frozen=True)
class Choice:
    """The backend that serves a run, and why it was the one."""

    backend: type[Backend]
    why: str

    @property
    def name(self) -> str:
        return self.backend.name


def _quiet(_line: str) -> None:
    """Where progress goes when nobody is watching."""


def select_backend(
    config: Config, roles: Collection[Role] = ROLES, report: Callable[[str], None] = _quiet
) -> Choice:
    """The backend ``config`` names, or the first that can serve ``roles`` under ``auto``.

    The chosen backend's one explicit step (pulling images) runs here, telling ``report``
    how it goes; under ``auto`` a backend whose step fails is passed over with its reason.
    """
    # Every backend provisions and checks its servers with their client libraries.
    lacking = next(filter(None, map(client_missing, roles)), None)
    if lacking:
        raise UnavailableError(lacking)
    backends = registry()
    # URLs name the servers to use: starting others instead would hide that they cannot be.
    urls = config.pg_url or config.redis_url
    named = "external" if config.backend == "auto" and urls else config.backend
    if named != "auto":
        chosen = backends[named]
        reason = chosen.unavailable(config, roles) or chosen.prepare(config, roles, report)
        if reason:
            raise UnavailableError(f"{chosen.name} backend: {reason}")
        why = "asked for" if config.backend != "auto" else "auto: URLs are set"
        return Choice(chosen, why)
    reasons: list[str] = []
    for backend in backends.values():
        if backend is ExternalBackend:
            continue  # only with URLs, handled above
        reason = backend.unavailable(config, roles) or backend.prepare(config, roles, report)
        if reason is None:
            passed = "; ".join(reasons)
            return Choice(backend, f"auto: {passed}" if passed else "auto: the first that can")
        reasons.append(f"not {backend.name}: {reason}")
    raise UnavailableError("no backend can serve this run; " + "; ".join(reasons))
