"""The schema of each worker's database: every migration under migrations/, by Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from servicematrix import ServerInfo


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server: ServerInfo) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", pg_server.url("postgresql+psycopg"))
    command.upgrade(config, "head")
