import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range(4))
def test_the_schema_is_there_and_empty(sync_db_session, n):
    assert sync_db_session.execute(text("SELECT count(*) FROM notes")).scalar() == 0
    seeded = sync_db_session.execute(text("SELECT name FROM seeded")).scalars().all()
    assert seeded == ["by the setup"]
    sync_db_session.execute(text("INSERT INTO notes (body) VALUES ('mine')"))
