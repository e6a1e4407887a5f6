"""Every migration of the project, told apart by its file name.

bench/schema.py copies this file to migrations/versions/r0000.py ... r0199.py. Migration
``r{i}`` comes after ``r{i - 1}`` (r0000 is the first); an even one creates table
``t{i // 2}``, the odd one after it adds the column ``name`` to that table. Alembic reads
``revision`` and ``down_revision`` from the module it imports, so they can be computed.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = Path(__file__).stem
NUMBER = int(revision.removeprefix("r"))
down_revision = f"r{NUMBER - 1:04d}" if NUMBER else None
TABLE = f"t{NUMBER // 2}"


def upgrade() -> None:
    if NUMBER % 2 == 0:
        op.create_table(TABLE, sa.Column("id", sa.Integer, primary_key=True))
    else:
        op.add_column(TABLE, sa.Column("name", sa.Text, nullable=True))
