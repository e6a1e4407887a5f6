"""Give every order a public reference, a UUIDv7.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shop.ids import uuid7

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

orders = sa.table("orders", sa.column("id", sa.Integer()), sa.column("reference", sa.Uuid()))


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("orders", sa.Column("reference", sa.Uuid(), nullable=True))
    # Existing orders get references minted now, in Python: the migration must run on
    # servers without uuidv7(), and their creation time is not recorded anywhere.
    ids = op.get_bind().scalars(sa.select(orders.c.id).order_by(orders.c.id)).all()
    if ids:
        fill = orders.update().where(orders.c.id == sa.bindparam("order_id"))
        op.get_bind().execute(
            fill.values(reference=sa.bindparam("new_reference")),
            [{"order_id": order_id, "new_reference": uuid7()} for order_id in ids],
        )
    op.alter_column("orders", "reference", nullable=False)
    op.create_unique_constraint(op.f("uq_orders_reference"), "orders", ["reference"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_constraint(op.f("uq_orders_reference"), "orders", type_="unique")
    op.drop_column("orders", "reference")
