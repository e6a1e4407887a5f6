"""Writes which heavy libraries the xdist controller had imported when its run ended.

The controller chooses the backend and checks its images; it starts no server, so it
needs none of the engine's client libraries, no driver and no asyncio stack.
"""

import json
import os
import pathlib
import sys

HEAVY = (
    "docker",
    "requests",
    "testcontainers",
    "psycopg",
    "redis",
    "sqlalchemy",
    "asyncpg",
    "pytest_asyncio",
)


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        imported = [name for name in HEAVY if name in sys.modules]
        pathlib.Path(os.environ["IMPORTS_FILE"]).write_text(json.dumps(imported))
