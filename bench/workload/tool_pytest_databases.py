"""pytest-databases: a PostgreSQL and a Redis container all workers share, a database of each
per worker, TRUNCATE and FLUSHDB after each test. Its modules load first (``-p`` each, then
``-p tool_pytest_databases``): the later fixture of a name wins, and the images are set here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import tables
from pytest_databases.docker.postgres import PostgresService
from pytest_databases.docker.redis import RedisService
from redis import Redis
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session


@pytest.fixture(scope="session")
def postgres_image() -> str:
    return os.environ.get("BENCH_PG_IMAGE", "postgres:15")


@pytest.fixture(scope="session")
def redis_image() -> str:
    return os.environ.get("BENCH_REDIS_IMAGE", "redis:7")


@pytest.fixture(scope="session")
def engine(postgres_service: PostgresService) -> Iterator[Engine]:
    s = postgres_service
    url = f"postgresql+psycopg://{s.user}:{s.password}@{s.host}:{s.port}/{s.database}"
    engine = create_engine(url)
    with engine.begin() as connection:
        tables.create(connection)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_connection(redis_service: RedisService) -> Iterator[Redis]:
    client = Redis(host=redis_service.host, port=redis_service.port, db=redis_service.db)
    yield client
    client.close()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    with tables.truncated_after(engine) as session:
        yield session


@pytest.fixture
def kv(redis_connection: Redis) -> Iterator[Any]:
    yield redis_connection
    redis_connection.flushdb()
