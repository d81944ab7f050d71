"""State checkpoints: the exchange state at a batch boundary, with the log position it includes.

Replaces the `checkpoints` table of 0001, which nothing ever wrote.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("checkpoints")
    op.create_table(
        "state_checkpoints",
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state_checkpoints")
    op.create_table(
        "checkpoints",
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, primary_key=True),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
