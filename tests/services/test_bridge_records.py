"""The bridge's withdrawal records: a withdrawal reaches VERIFIED whichever of the bridge's
loops sees its batch first, the tracker (batched) or the L1 watcher (verified)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from perpnet.bridge import records
from perpnet.core.batch import BatchBuilder
from perpnet.core.crypto import keccak
from perpnet.core.encoding import encode_tx
from perpnet.core.markets import USD
from perpnet.runtime.db import make_engine, upgrade
from perpnet.runtime.models import WithdrawalRecord, WithdrawalStatus
from perpnet.sequencer import store
from perpnet.testkit import Desk, trader

ALICE = trader("alice")


@pytest.mark.parametrize("first", ["tracked", "verified"])
def test_a_withdrawal_is_verified_whichever_loop_sees_its_batch_first(
    tmp_path: Path, first: str
) -> None:
    desk = Desk()
    builder = BatchBuilder(desk.state())
    txs = [desk.deposit(ALICE, 100 * USD), desk.withdraw(ALICE, 10 * USD, 0)]
    for tx in txs:
        assert not isinstance(builder.add(tx), Exception)
    batch = builder.cut()
    engine = make_engine(f"sqlite:///{tmp_path / 'perpnet.db'}")
    upgrade(engine)
    rows = [
        {"seq": i + 1, "tx_hash": keccak(encode_tx(tx)), "tx": encode_tx(tx),
         "batch_id": batch.batch_id, "received_ms": 1_000 + i, "applied_ms": 1_000 + i}
        for i, tx in enumerate(txs)
    ]  # fmt: skip
    with Session(engine) as session, session.begin():
        store.write(session, rows, [store.batch_record(batch, 1, len(txs))])
    steps = {
        "tracked": lambda s: records.track_withdrawals(s, batch.batch_id, desk.config.domain),
        "verified": lambda s: records.mark_verified(s, batch.batch_id, b"\x01" * 32, 1, 9_000),
    }
    order = ["tracked", "verified"] if first == "tracked" else ["verified", "tracked"]
    for step in order:
        with Session(engine) as session, session.begin():
            steps[step](session)
    with Session(engine) as session:
        (record,) = session.query(WithdrawalRecord).all()
        assert record.amount == 10 * USD and record.batch_id == batch.batch_id
        assert record.status == WithdrawalStatus.VERIFIED
        assert record.verified_ms is not None and record.verified_ms >= 9_000
    engine.dispose()
