"""A pytest plugin (``-p gcfreeze``): once collection is done, everything alive so far
(modules, the collected items) moves to the garbage collector's permanent generation, so
later collections scan only what the tests themselves allocate."""

from __future__ import annotations

import gc

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    gc.freeze()
