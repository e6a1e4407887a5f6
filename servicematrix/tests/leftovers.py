"""Where a run's servers live, so tests can prove they are gone."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# An inner test that writes what its worker runs: pids and data dirs.
RECORD_SERVERS = """
import json, os, pathlib, pytest, redis
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
    entry = {{"worker": worker, "pg_port": pg_server.port, "redis_port": redis_server.port,
             "pids": [pg_pid, redis_pid], "owner": os.getpid(),
             "workdir": str(pathlib.Path(datadir).parent)}}
    pathlib.Path({out!r}, worker + ".json").write_text(json.dumps(entry))
"""


def read_records(directory: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def leftovers(records: list[dict[str, object]]) -> list[str]:
    """Server processes and data dirs of ``records`` that still exist."""
    found = [f"pid {p}" for r in records for p in r["pids"] if alive(p)]  # type: ignore[attr-defined]
    found += [str(r["workdir"]) for r in records if os.path.exists(str(r["workdir"]))]
    return found


def wait_for_no_leftovers(records: list[dict[str, object]], timeout: float) -> list[str]:
    """Poll until nothing of ``records`` remains, or ``timeout`` passes; what remains."""
    deadline = time.monotonic() + timeout
    while (left := leftovers(records)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
