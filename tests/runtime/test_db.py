"""SQLite by default: migrations build every table, and a committed write survives a reopen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from perpnet.runtime.db import Database, make_engine, normalize_url, upgrade
from perpnet.runtime.models import (
    Base,
    BatchRecord,
    BatchStatus,
    TxLogEntry,
    WithdrawalRecord,
    WithdrawalStatus,
)

TABLES = {
    "tx_log",
    "batches",
    "proofs",
    "deposits",
    "withdrawals",
    "resting_orders",
    "state_checkpoints",
}


def test_upgrade_creates_every_table_and_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/perpnet.db"  # the folder is created
    upgrade(url)
    upgrade(url)  # idempotent: services run it at every start
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []  # no model change unmigrated
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        engine.dispose()


def test_a_committed_write_survives_closing_and_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/perpnet.db"
    amount = 2**127 + 1  # u128: beyond what SQLite's REAL could keep exact

    def write(session: Session) -> None:
        session.add(TxLogEntry(seq=1, tx_hash=b"\x11" * 32, tx=b"\x01tx", received_ms=5))
        batch = BatchRecord(
            id=1,
            old_root=b"\0" * 32,
            new_root=b"\1" * 32,
            first_seq=1,
            last_seq=1,
            public_inputs=b"pi",
            state_diff=b"diff",
        )
        batch.advance(BatchStatus.SEQUENCED, 10)
        batch.advance(BatchStatus.PROVING, 20)
        session.add(batch)
        withdrawal = WithdrawalRecord(account=3, recipient=b"\2" * 20, amount=amount)
        withdrawal.advance(WithdrawalStatus.REQUESTED, 30)
        session.add(withdrawal)

    def read(session: Session) -> tuple[TxLogEntry, BatchRecord, WithdrawalRecord]:
        return (
            session.scalars(select(TxLogEntry)).one(),
            session.scalars(select(BatchRecord)).one(),
            session.scalars(select(WithdrawalRecord)).one(),
        )

    async def first_run() -> None:
        async with Database(url) as db:
            await db.upgrade()
            assert await db.ping()
            await db.run(write)

    async def second_run() -> tuple[TxLogEntry, BatchRecord, WithdrawalRecord]:
        async with Database(url) as db:
            await db.upgrade()
            return await db.run(read)

    asyncio.run(first_run())
    entry, batch, withdrawal = asyncio.run(second_run())
    assert (entry.seq, entry.tx, entry.batch_id) == (1, b"\x01tx", None)
    assert batch.status is BatchStatus.PROVING
    assert (batch.sequenced_ms, batch.proving_ms, batch.proven_ms) == (10, 20, None)
    assert withdrawal.amount == amount and withdrawal.id == 1
    assert withdrawal.status is WithdrawalStatus.REQUESTED and withdrawal.requested_ms == 30


def test_a_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/perpnet.db"

    def add(session: Session) -> None:
        session.add(TxLogEntry(seq=1, tx_hash=b"\x11" * 32, tx=b"a", received_ms=1))

    def add_then_fail(session: Session) -> None:
        session.add(TxLogEntry(seq=2, tx_hash=b"\x22" * 32, tx=b"b", received_ms=2))
        session.flush()
        raise RuntimeError("crash after the write, before the commit")

    async def scenario() -> list[int]:
        async with Database(url) as db:
            await db.upgrade()
            await db.run(add)
            with pytest.raises(RuntimeError):
                await db.run(add_then_fail)
            return await db.run(lambda s: list(s.scalars(select(TxLogEntry.seq))))

    assert asyncio.run(scenario()) == [1]


def test_stages_only_move_forward() -> None:
    withdrawal = WithdrawalRecord(account=1, recipient=b"\0" * 20, amount=5)
    withdrawal.advance(WithdrawalStatus.REQUESTED, 1)
    withdrawal.advance(WithdrawalStatus.VERIFIED, 9)  # stages may be skipped
    with pytest.raises(ValueError, match="cannot go back"):
        withdrawal.advance(WithdrawalStatus.BATCHED, 10)
    with pytest.raises(ValueError, match="not a u128"):
        WithdrawalRecord.amount.type.process_bind_param(-1, None)  # type: ignore[attr-defined]


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u:p@db/perpnet") == "postgresql+psycopg://u:p@db/perpnet"
    assert normalize_url("postgres://db/x") == "postgresql+psycopg://db/x"
    assert normalize_url("postgresql+asyncpg://db/x") == "postgresql+asyncpg://db/x"
    assert normalize_url("sqlite:///a.db") == "sqlite:///a.db"
