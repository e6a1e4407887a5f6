"""Tests that need the whole schema: the table the last of the 200 migrations altered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

# For the annotation only: imported at collection, sqlalchemy.orm made each worker's setup,
# the time bench/schema.py measures, some 0.1 s slower.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@pytest.mark.parametrize("n", range(20))
def test_the_last_table(sync_db_session: Session, n: int) -> None:
    assert sync_db_session.execute(text("SELECT count(name) FROM t99")).scalar() == 0
