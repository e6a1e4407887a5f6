"""servicematrix: real PostgreSQL and Redis for every pytest-xdist worker.

The public API, for conftests and helpers; everything else in the package is internal.
The isolation helpers import SQLAlchemy, so they load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from servicematrix.drivers import resolve
from servicematrix.errors import ServiceMatrixError
from servicematrix.info import Role, ServerInfo

if TYPE_CHECKING:
    from servicematrix.control import ServerControl
    from servicematrix.isolation import (
        async_committed_session,
        async_rollback_session,
        committed_session,
        rollback_session,
    )

__all__ = [
    "Role",
    "ServerControl",
    "ServerInfo",
    "ServiceMatrixError",
    "async_committed_session",
    "async_rollback_session",
    "committed_session",
    "resolve",
    "rollback_session",
]
_LAZY = {
    "ServerControl": "servicematrix.control",
    "async_committed_session": "servicematrix.isolation",
    "async_rollback_session": "servicematrix.isolation",
    "committed_session": "servicematrix.isolation",
    "rollback_session": "servicematrix.isolation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'servicematrix' has no attribute {name!r}")
