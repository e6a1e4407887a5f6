"""servicematrix: real PostgreSQL and Redis for every pytest-xdist worker."""

from servicematrix.info import ServerInfo

__all__ = ["ServerInfo"]
