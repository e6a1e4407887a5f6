"""Writes which heavy libraries each process of the run had imported when it ended.

The xdist controller chooses the backend and checks its images; it starts no server, so
it needs none of the engine's client libraries, no driver and no asyncio stack. The
workers start the servers of a sync-only suite: they need no asyncio stack either.
"""

import json
import os
import pathlib
import sys

# (redis.asyncio is left out: `import redis` loads it, whoever imports redis-py.)
ASYNC = ("asyncpg", "sqlalchemy.ext.asyncio", "pytest_asyncio")
HEAVY = ("docker", "requests", "testcontainers", "psycopg", "redis", "sqlalchemy", *ASYNC)


def pytest_sessionfinish(session):
    worker = getattr(session.config, "workerinput", {}).get("workerid", "controller")
    watched = ASYNC if worker != "controller" else HEAVY
    imported = [name for name in watched if name in sys.modules]
    pathlib.Path(os.environ["IMPORTS_DIR"], worker + ".json").write_text(json.dumps(imported))
