"""testcontainers as documented: a PostgreSQL and a Redis container per worker, the schema made
once, TRUNCATE and FLUSHDB after each test; BENCH_TUNED=1 adds a tuned setup's durability off."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import tables
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session
from testcontainers.postgres import PostgresContainer
from testcontainers.redis import RedisContainer

TUNED = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    container = PostgresContainer(os.environ.get("BENCH_PG_IMAGE", "postgres:15"), driver="psycopg")
    if os.environ.get("BENCH_TUNED"):
        container.with_command(TUNED)
    with container as postgres:
        engine = create_engine(postgres.get_connection_url())
        with engine.begin() as connection:
            tables.create(connection)
        yield engine
        engine.dispose()


@pytest.fixture(scope="session")
def redis_container() -> Iterator[RedisContainer]:
    with RedisContainer(os.environ.get("BENCH_REDIS_IMAGE", "redis:7")) as container:
        yield container


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    with tables.truncated_after(engine) as session:
        yield session


@pytest.fixture
def kv(redis_container: RedisContainer) -> Iterator[Any]:
    client = redis_container.get_client()
    yield client
    client.flushdb()
    client.close()
