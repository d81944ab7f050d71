"""Batches: a FAILED stage with its reason (a batch the prover refuses), and the L1 gas used.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("failed_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("failure", sa.String(500), nullable=True))
        batch.add_column(sa.Column("l1_gas", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        for column in ("l1_gas", "failure", "failed_ms"):
            batch.drop_column(column)
