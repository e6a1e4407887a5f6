"""BENCH_TESTS tests, each starting from empty tables and Redis, inserting a user, an item and
an order, joining them back, and a Redis SET/GET. Each tool's plugin (``-p tool_<name>``)
provides ``db`` (a SQLAlchemy Session) and ``kv`` (redis-py), isolated its own way."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import text

TESTS = int(os.environ.get("BENCH_TESTS", "100"))
ROWS = text(
    "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM items)"
    " + (SELECT count(*) FROM orders)"
)
JOINED = text(
    "SELECT u.name, i.title, o.quantity FROM orders o"
    " JOIN users u ON u.id = o.user_id JOIN items i ON i.id = o.item_id"
)


@pytest.mark.parametrize("n", range(TESTS))
def test_order(n: int, db: Any, kv: Any) -> None:
    assert db.execute(ROWS).scalar_one() == 0
    assert kv.dbsize() == 0
    name = {"name": f"user-{n}"}
    user = db.execute(text("INSERT INTO users (name) VALUES (:name) RETURNING id"), name)
    item = db.execute(
        text("INSERT INTO items (title) VALUES (:title) RETURNING id"), {"title": f"item-{n}"}
    )
    order = {"user": user.scalar_one(), "item": item.scalar_one(), "quantity": n % 5 + 1}
    db.execute(
        text("INSERT INTO orders (user_id, item_id, quantity) VALUES (:user, :item, :quantity)"),
        order,
    )
    db.commit()
    assert tuple(db.execute(JOINED).one()) == (f"user-{n}", f"item-{n}", n % 5 + 1)
    kv.set(f"order:{n}", n % 5 + 1)
    assert kv.get(f"order:{n}") == str(n % 5 + 1).encode()
