"""``-p gcfreeze``: after collection, everything alive (modules, items) moves to the collector's
permanent generation, so later collections scan only what the tests allocate."""

from __future__ import annotations

import gc

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    gc.freeze()
