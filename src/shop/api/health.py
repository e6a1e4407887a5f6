"""GET /health: can the service reach its servers, and what are they?"""

from fastapi import APIRouter, Response, status
from sqlalchemy.exc import SQLAlchemyError

from shop.api.deps import Cache, PgProbes
from shop.api.driver import call
from shop.pg_capabilities import PgServer
from shop.redis_capabilities import RedisServer
from shop.schemas import Health, ServerHealth

router = APIRouter(tags=["health"])


def server_health(server: PgServer | RedisServer | None) -> ServerHealth:
    """``ok`` with what the server reported when it answered, else ``down``."""
    if server is None:
        return ServerHealth(status="down")
    return ServerHealth(
        status="ok",
        product=server.product,
        version=server.version,
        features=sorted(server.features),
    )


@router.get("/health")
async def health(probe: PgProbes, cache: Cache, response: Response) -> Health:
    """Report each server's status, version and features; 503 when PostgreSQL is down."""
    try:
        postgres: PgServer | None = await call(probe.check)
    except (SQLAlchemyError, OSError):
        postgres = None
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(postgres=server_health(postgres), redis=server_health(await call(cache.server)))
