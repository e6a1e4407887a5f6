"""503 with a JSON detail, instead of a 500, while the database cannot be reached.

A restart, a crash or a network cut surfaces in many shapes: SQLAlchemy's
OperationalError or InterfaceError, a plain DBAPIError carrying a connection
SQLSTATE (asyncpg's "shutting down" and "starting up"), or, while asyncpg
connects, a bare OSError. Clients can retry all of them; other database errors
stay 500s, as bugs.
"""

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)

DETAIL = "The database is unavailable; retry shortly."
RETRY_AFTER_SECONDS = 1
# SQLSTATE classes a restart produces: 08 (connection exception), 57P (shutting down,
# starting up); asyncpg's come wrapped as plain DBAPIErrors, so the code tells them apart.
_UNREACHABLE_STATES = ("08", "57P")


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached, rather than a bug."""
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return (
            exc.connection_invalidated
            or isinstance(exc, OperationalError | InterfaceError)
            or sqlstate.startswith(_UNREACHABLE_STATES)
        )
    # asyncpg lets a refused, reset or timed-out connect through unwrapped.
    return isinstance(exc, OSError)


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The 503 for an unreachable database; any other error goes on to be a 500."""
    if not database_unreachable(exc):
        raise exc
    log.warning("database unreachable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": DETAIL},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install(app: FastAPI) -> None:
    """Answer 503 on ``app`` whenever the database is unreachable."""
    for kind in (DBAPIError, OSError):
        app.add_exception_handler(kind, database_unavailable)
