"""Clients made at import time, from the environment."""

import os

import redis
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["DATABASE_URL"])
cache = redis.Redis.from_url(os.environ["REDIS_URL"])


def remember(key, value):
    cache.set(key, value)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS seen (key text PRIMARY KEY)"))
        conn.execute(text("INSERT INTO seen VALUES (:k) ON CONFLICT DO NOTHING"), {"k": key})
