"""the holiday calendar the engine decided with, from which input on

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holidays",
        sa.Column("from_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("dates", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("from_seq"),
    )


def downgrade() -> None:
    op.drop_table("holidays")
