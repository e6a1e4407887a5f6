"""GET /health: can the service reach its servers?"""

from fastapi import APIRouter, Response, status
from sqlalchemy.exc import SQLAlchemyError

from shop import queries
from shop.api.deps import Cache, DbSession
from shop.api.driver import call
from shop.schemas import Health, ServerHealth

router = APIRouter(tags=["health"])


def server_health(version: str | None) -> ServerHealth:
    """``ok`` with the version when the server answered, else ``down``."""
    return ServerHealth(status="down" if version is None else "ok", version=version)


@router.get("/health")
async def health(session: DbSession, cache: Cache, response: Response) -> Health:
    """Report each server's status and version; 503 when PostgreSQL is down."""
    try:
        pg_version: str | None = await call(session.scalar, queries.server_version())
    except (SQLAlchemyError, OSError):
        pg_version = None
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        postgres=server_health(pg_version),
        redis=server_health(await call(cache.server_version)),
    )
