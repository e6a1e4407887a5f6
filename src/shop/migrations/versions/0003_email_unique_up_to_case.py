"""Make emails unique up to case: a unique ``email_key`` (the case-folded email) replaces
the unique ``email``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table("users", sa.column("id", sa.Integer()), sa.column("email"), sa.column("email_key"))


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("users", sa.Column("email_key", sa.Text(), nullable=True))
    rows = op.get_bind().execute(sa.select(users.c.id, users.c.email)).all()
    # The rule of shop.columns.email_key at the time of writing, frozen here.
    keys = {user_id: email.casefold() for user_id, email in rows}
    clashes = [key for key, count in Counter(keys.values()).items() if count > 1]
    if clashes:
        raise RuntimeError(
            f"{len(clashes)} emails belong to several users up to case, such as {clashes[0]!r};"
            " merge those users, then migrate again"
        )
    if keys:
        fill = users.update().where(users.c.id == sa.bindparam("user_id"))
        op.get_bind().execute(
            fill.values(email_key=sa.bindparam("key")),
            [{"user_id": user_id, "key": key} for user_id, key in keys.items()],
        )
    op.alter_column("users", "email_key", nullable=False)
    op.drop_constraint(op.f("uq_users_email"), "users", type_="unique")
    op.create_unique_constraint(op.f("uq_users_email_key"), "users", ["email_key"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_constraint(op.f("uq_users_email_key"), "users", type_="unique")
    op.create_unique_constraint(op.f("uq_users_email"), "users", ["email"])
    op.drop_column("users", "email_key")
