"""A fixture that writes what its worker runs, pids and data dirs, to RECORD_DIR."""

import json
import os
import pathlib

import pytest
import redis
from sqlalchemy import create_engine, text


@pytest.fixture
def recorded(pg_server, redis_server):
    engine = create_engine(pg_server.url("postgresql+psycopg"))
    with engine.connect() as conn:
        datadir = conn.execute(text("SHOW data_directory")).scalar()
    engine.dispose()
    with redis.Redis.from_url(redis_server.url()) as client:
        redis_pid = client.info("server")["process_id"]
    pg_pid = int(pathlib.Path(datadir, "postmaster.pid").read_text().split()[0])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    entry = {
        "worker": worker,
        "pg_port": pg_server.port,
        "redis_port": redis_server.port,
        "pids": [pg_pid, redis_pid],
        "owner": os.getpid(),
        "workdir": str(pathlib.Path(datadir).parent),
    }
    pathlib.Path(os.environ["RECORD_DIR"], worker + ".json").write_text(json.dumps(entry))
