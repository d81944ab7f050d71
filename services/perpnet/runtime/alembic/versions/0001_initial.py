"""Initial schema: tx log, batches, proofs, deposits, withdrawals, resting orders, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Migrations are frozen snapshots: they spell out their columns instead of
importing perpnet.runtime.models, which keeps changing after them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

U128 = sa.String(39)  # perpnet.runtime.models.U128 stores decimal text


def _times(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=True) for name in names]


def _status(name: str, *values: str) -> sa.Column[str]:
    kind = sa.Enum(*values, name=name, native_enum=False, length=16)
    return sa.Column("status", kind, nullable=False)


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(f"ix_{table}_{column}", table, [column])


def upgrade() -> None:
    op.create_table(
        "tx_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, primary_key=True),
        sa.Column("tx_hash", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("tx", sa.LargeBinary(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("applied_ms", sa.BigInteger(), nullable=True),
    )
    _indexes("tx_log", "batch_id")
    op.create_table(
        "batches",
        sa.Column("id", sa.BigInteger(), autoincrement=False, primary_key=True),
        sa.Column("old_root", sa.LargeBinary(32), nullable=False),
        sa.Column("new_root", sa.LargeBinary(32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("public_inputs", sa.LargeBinary(), nullable=False),
        sa.Column("state_diff", sa.LargeBinary(), nullable=False),
        _status("batchstatus", "sequenced", "proving", "proven", "posted", "verified"),
        *_times("sequenced_ms", "proving_ms", "proven_ms", "posted_ms", "verified_ms"),
        sa.Column("l1_tx", sa.LargeBinary(32), nullable=True),
    )
    _indexes("batches", "status")
    op.create_table(
        "proofs",
        sa.Column("batch_id", sa.BigInteger(), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.Column("prover_id", sa.String(64), nullable=False),
        sa.Column("wait_ms", sa.BigInteger(), nullable=False),
        sa.Column("prove_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "deposits",
        sa.Column("l1_id", sa.BigInteger(), autoincrement=False, primary_key=True),
        sa.Column("owner", sa.LargeBinary(20), nullable=False),
        sa.Column("subaccount", sa.BigInteger(), nullable=False),
        sa.Column("amount", U128, nullable=False),
        sa.Column("l1_block", sa.BigInteger(), nullable=False),
        sa.Column("l1_tx", sa.LargeBinary(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        _status("depositstatus", "seen", "confirmed", "credited", "verified"),
        *_times("seen_ms", "confirmed_ms", "credited_ms", "verified_ms"),
    )
    _indexes("deposits", "owner", "status")
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("recipient", sa.LargeBinary(20), nullable=False),
        sa.Column("amount", U128, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        _status("withdrawalstatus", "requested", "batched", "proven", "verified", "claimed"),
        *_times("requested_ms", "batched_ms", "proven_ms", "verified_ms", "claimed_ms"),
    )
    _indexes("withdrawals", "account", "recipient", "batch_id", "status")
    op.create_table(
        "resting_orders",
        sa.Column("hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("signed_order", sa.LargeBinary(), nullable=False),
        sa.Column("market_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.LargeBinary(20), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("remaining", U128, nullable=False),
        _status("orderstatus", "open", "filled", "cancelled", "expired"),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    _indexes("resting_orders", "market_id", "owner", "status")
    op.create_table(
        "checkpoints",
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, primary_key=True),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "checkpoints",
        "resting_orders",
        "withdrawals",
        "deposits",
        "proofs",
        "batches",
        "tx_log",
    ):
        op.drop_table(table)
