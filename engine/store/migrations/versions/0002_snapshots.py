"""instance snapshots: each instance row's state_seq, and the snapshots taken

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:00:00

Until 0002 every commit rewrote the state and timers of each instance it changed, so the
instances and timers tables were a snapshot as of the store's last input: recorded as such
here, with each row's state current as of its last_seq.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute("UPDATE instances SET state_seq = last_seq")
    op.execute(
        "INSERT INTO snapshots (seq, instances) "
        "SELECT MAX(seq), (SELECT COUNT(*) FROM instances) FROM inputs HAVING COUNT(*) > 0"
    )


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("state_seq")
    op.drop_table("snapshots")
