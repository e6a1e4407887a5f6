import pytest
from models import Hero
from sqlmodel import Session, select


@pytest.mark.parametrize("n", range(4))
def test_each_test_starts_empty(db_session, n):
    assert isinstance(db_session, Session)
    assert db_session.exec(select(Hero)).all() == []
    db_session.add(Hero(name=f"hero {n}"))
    db_session.commit()
    assert [h.name for h in db_session.exec(select(Hero))] == [f"hero {n}"]


def test_only_the_sync_driver_runs(driver):
    assert driver == "sync"
