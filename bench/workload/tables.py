"""The workload's three tables, created once per server by each tool's own fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

TABLES = ("users", "items", "orders")
DDL = (
    "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE items (id serial PRIMARY KEY, title text NOT NULL)",
    "CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users,"
    " item_id int NOT NULL REFERENCES items, quantity int NOT NULL)",
)
TRUNCATE = text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


def create(connection: Connection) -> None:
    for statement in DDL:
        connection.execute(text(statement))


@contextmanager
def truncated_after(engine: Engine) -> Iterator[Session]:
    """A Session on ``engine``, then TRUNCATE: how tools that commit for real isolate tests."""
    with Session(engine) as session:
        yield session
    with engine.begin() as connection:
        connection.execute(TRUNCATE)
