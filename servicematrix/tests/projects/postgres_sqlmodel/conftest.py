import models  # noqa: F401 - registers the tables
import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    engine = create_engine(pg_server.url("postgresql+psycopg"))
    SQLModel.metadata.create_all(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def servicematrix_session_class():
    return Session
