"""pytest-postgresql and pytest-redis: servers from the binaries --postgresql-exec and
--redis-exec name, a database per test cloned from a template with the schema, FLUSHDB after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import tables
from pytest_postgresql import factories
from pytest_redis import factories as redis_factories
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool


def load(host: str, port: int, user: str, dbname: str, password: str | None, **_: Any) -> None:
    auth = f"{user}:{password}" if password else user
    engine = create_engine(f"postgresql+psycopg://{auth}@{host}:{port}/{dbname}")
    with engine.begin() as connection:
        tables.create(connection)
    engine.dispose()


# Names of their own: the plugins' entry points register after a -p plugin, and their default
# postgresql_proc and redis_proc would override ours.
workload_pg_proc = factories.postgresql_proc(load=[load])
workload_pg = factories.postgresql("workload_pg_proc")
workload_redis_proc = redis_factories.redis_proc()
workload_redis = redis_factories.redisdb("workload_redis_proc")


@pytest.fixture
def db(workload_pg: Any) -> Iterator[Session]:
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: workload_pg, poolclass=StaticPool
    )
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def kv(workload_redis: Any) -> Any:
    return workload_redis
