"""Backends: where servers come from. Each returns the same ServerInfo type."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

from servicematrix.backends.base import Backend, WorkerContext, client_missing
from servicematrix.config import Config
from servicematrix.errors import UnavailableError
from servicematrix.info import ROLES, Role

__all__ = ["Backend", "Choice", "WorkerContext", "backend_class", "select_backend"]

# Backends by name, in the order ``auto`` tries them; each module loads when first asked
# for, so a run imports only the backends it considers.
_CLASSES = {
    "external": ("servicematrix.backends.external", "ExternalBackend"),
    "docker": ("servicematrix.backends.docker", "DockerBackend"),
    "local": ("servicematrix.backends.local", "LocalBackend"),
}


def backend_class(name: str) -> type[Backend]:
    """The backend called ``name``."""
    module, cls = _CLASSES[name]
    found: type[Backend] = getattr(importlib.import_module(module), cls)
    return found


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
    # URLs name the servers to use: starting others instead would hide that they cannot be.
    urls = config.pg_url or config.redis_url
    named = "external" if config.backend == "auto" and urls else config.backend
    if named != "auto":
        chosen = backend_class(named)
        reason = chosen.unavailable(config, roles) or chosen.prepare(config, roles, report)
        if reason:
            raise UnavailableError(f"{chosen.name} backend: {reason}")
        why = "asked for" if config.backend != "auto" else "auto: URLs are set"
        return Choice(chosen, why)
    reasons: list[str] = []
    for name in _CLASSES:
        if name == "external":
            continue  # only with URLs, handled above
        backend = backend_class(name)
        reason = backend.unavailable(config, roles) or backend.prepare(config, roles, report)
        if reason is None:
            passed = "; ".join(reasons)
            return Choice(backend, f"auto: {passed}" if passed else "auto: the first that can")
        reasons.append(f"not {backend.name}: {reason}")
    raise UnavailableError("no backend can serve this run; " + "; ".join(reasons))
