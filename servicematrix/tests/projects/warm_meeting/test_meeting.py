"""A run that waits, with its servers up, until the other run named in OTHER_RUN is up too."""

import os
import time
from pathlib import Path

MEETING_SECONDS = 120


def test_both_runs_hold_their_servers_at_once(pg_server, redis_server):
    meeting = Path(os.environ["MEETING_DIR"])
    (meeting / os.environ["THIS_RUN"]).touch()
    other = meeting / os.environ["OTHER_RUN"]
    deadline = time.monotonic() + MEETING_SECONDS
    while not other.exists():
        assert time.monotonic() < deadline, "the other run never came"
        time.sleep(0.05)
