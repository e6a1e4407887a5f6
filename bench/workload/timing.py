"""``-p timing``: each pytest process records, in wall-clock seconds, when its first fixture
set-up and first test's body began and when each test ended, into
``$BENCH_TIMING_DIR/<worker>.json`` at its end."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SEEN: dict[str, Any] = {"first_fixture": None, "first_test": None, "ends": []}


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Iterator[None]:
    if _SEEN["first_fixture"] is None:
        _SEEN["first_fixture"] = time.time()
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if _SEEN["first_test"] is None:
        _SEEN["first_test"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _SEEN["ends"].append(time.time())


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = os.environ.get("BENCH_TIMING_DIR")
    if folder and _SEEN["ends"]:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(folder, f"{worker}.json").write_text(json.dumps(_SEEN))
