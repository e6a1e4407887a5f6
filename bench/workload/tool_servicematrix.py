"""servicematrix: a server pair per worker, savepoint rollback and FLUSHDB per test, set by
SERVICEMATRIX_*. A ``-p`` plugin loads before servicematrix's, so the schema is a fixture of
its own here, not the conftest override of ``servicematrix_db_setup`` a project would write."""

from __future__ import annotations

from typing import Any

import pytest
import tables
from sqlalchemy import create_engine

from servicematrix import ServerInfo


@pytest.fixture(scope="session")
def workload_schema(pg_server: ServerInfo) -> None:
    engine = create_engine(pg_server.url("postgresql+psycopg"))
    with engine.begin() as connection:
        tables.create(connection)
    engine.dispose()


@pytest.fixture
def db(workload_schema: None, sync_db_session: Any) -> Any:
    return sync_db_session


@pytest.fixture
def kv(sync_redis: Any) -> Any:
    return sync_redis
