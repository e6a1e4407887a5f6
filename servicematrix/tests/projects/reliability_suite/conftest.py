"""What each worker of a reliability run writes down: its servers, their identities, and
whether anyone else wrote into them. RECORD_DIR names the folder; RUN_NAME this run."""

import json
import os
import pathlib

import psycopg
import pytest
import redis


@pytest.fixture(scope="session", autouse=True)
def recorded(pg_server, redis_server):
    run = os.environ["RUN_NAME"]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS marks (run text)")
        conn.execute("INSERT INTO marks VALUES (%s)", (run,))
        started, pid = conn.execute(
            "SELECT pg_postmaster_start_time()::text, (SELECT pid FROM pg_stat_activity"
            " WHERE backend_type = 'checkpointer')"
        ).fetchone()
    with redis.Redis.from_url(redis_server.url()) as client:
        redis_id = client.info("server")["run_id"]
    entry = {
        "worker": worker,
        "owner": os.getpid(),
        "pg": [pg_server.host, pg_server.port, started],
        "redis": [redis_server.host, redis_server.port, redis_id],
        "checkpointer": pid,
    }
    folder = pathlib.Path(os.environ["RECORD_DIR"])
    (folder / f"{run}-{worker}.json").write_text(json.dumps(entry))
    yield
    with psycopg.connect(pg_server.url()) as conn:
        marks = [row[0] for row in conn.execute("SELECT run FROM marks")]
    entry["marks"] = marks
    (folder / f"{run}-{worker}.json").write_text(json.dumps(entry))
