"""Where a run's servers live, so tests can prove they are gone."""

from __future__ import annotations

import json
import os
from pathlib import Path

from servicematrix.processes import poll, proc_stat

# A conftest whose ``recorded`` fixture writes what its worker runs (pids, data dirs) to
# $RECORD_DIR.
RECORD_SERVERS = Path(__file__).parent / "projects" / "record_servers" / "conftest.py"


def read_records(directory: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat.state != "Z"


def leftovers(records: list[dict[str, object]]) -> list[str]:
    """Server processes and data dirs of ``records`` that still exist."""
    found = [f"pid {p}" for r in records for p in r["pids"] if alive(p)]  # type: ignore[attr-defined]
    found += [str(r["workdir"]) for r in records if os.path.exists(str(r["workdir"]))]
    return found


def wait_for_no_leftovers(records: list[dict[str, object]], timeout: float) -> list[str]:
    """Poll until nothing of ``records`` remains, or ``timeout`` passes; what remains."""
    poll(lambda: not leftovers(records), timeout, 0.05)
    return leftovers(records)
