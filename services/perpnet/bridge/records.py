"""The bridge's database work: deposits and withdrawals through their stages, batches to post.

Each function runs in one database transaction (Database.run) and is
idempotent, so a bridge restarted at any point redoes it safely. Stage times
come from where the stage really happened (the tx log, the batch cut, the
proof), so the latency of a stage does not depend on when the bridge looked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from perpnet.bridge import metrics
from perpnet.bridge.statement import Statement
from perpnet.core.batch import PublicInputs
from perpnet.core.encoding import decode_account, decode_tx, tx_type
from perpnet.core.txs import ForcedWithdrawal, TxType, Withdraw
from perpnet.core.typed_data import Domain
from perpnet.runtime.models import (
    BatchRecord,
    BatchStatus,
    DepositRecord,
    DepositStatus,
    ProofRecord,
    TxLogEntry,
    WithdrawalRecord,
    WithdrawalStatus,
)

PROVEN_OR_LATER = (BatchStatus.PROVEN, BatchStatus.POSTED, BatchStatus.VERIFIED)
WITHDRAWAL_ORDER = tuple(WithdrawalStatus)


def advance_withdrawal(record: WithdrawalRecord, status: WithdrawalStatus, at_ms: int) -> None:
    """Move a withdrawal forward (never back) and observe the stage's latency."""
    if WITHDRAWAL_ORDER.index(status) <= WITHDRAWAL_ORDER.index(record.status):
        return
    previous = getattr(record, WithdrawalRecord.STAGES[record.status]) or at_ms
    record.advance(status, max(at_ms, previous))
    metrics.WITHDRAWAL_STAGE.labels(status.value).observe(max(0, at_ms - previous) / 1000)
    if status in (WithdrawalStatus.VERIFIED, WithdrawalStatus.CLAIMED) and record.requested_ms:
        latency = max(0, at_ms - record.requested_ms) / 1000
        metrics.WITHDRAWAL_LATENCY.labels(status.value).observe(latency)


# ------------------------------------------------------------------ batches

_WITHDRAWING = (TxType.WITHDRAW, TxType.FORCED_WITHDRAWAL)


def track_withdrawals(session: Session, batch_id: int, domain: Domain) -> int | None:
    """Record the batch's withdrawals (requested, then batched); None if the batch is not cut."""
    batch = session.get(BatchRecord, batch_id)
    if batch is None:
        return None
    pi = PublicInputs.decode(batch.public_inputs)
    owners: dict[tuple[bytes, int], int] = {}
    statement = Statement.of(batch.public_inputs, batch.state_diff, b"")
    for a in statement.diff.accounts:
        account = decode_account(a.account_id, a.new_leaf)
        owners[(account.owner, account.subaccount)] = a.account_id
    served = {f.request_id: f.served for f in pi.forced}
    entries = session.execute(
        select(TxLogEntry.seq, TxLogEntry.tx, TxLogEntry.received_ms)
        .where(TxLogEntry.batch_id == batch_id)
        .order_by(TxLogEntry.seq)
    ).all()
    count = 0
    for seq, raw, received_ms in entries:
        if tx_type(raw) not in _WITHDRAWING:
            continue
        tx = decode_tx(raw, domain)
        if isinstance(tx, Withdraw):
            amount = tx.amount
        elif isinstance(tx, ForcedWithdrawal) and served.get(tx.request_id, 0) > 0:
            amount = served[tx.request_id]
        else:
            continue
        record = session.scalars(
            select(WithdrawalRecord).where(WithdrawalRecord.seq == seq)
        ).first()
        if record is None:
            record = WithdrawalRecord(
                account=owners.get((tx.owner, tx.subaccount), 0),
                recipient=tx.recipient,
                amount=amount,
                seq=seq,
            )
            record.advance(WithdrawalStatus.REQUESTED, received_ms)
            session.add(record)
        record.batch_id = batch_id
        advance_withdrawal(record, WithdrawalStatus.BATCHED, batch.sequenced_ms or received_ms)
        if batch.status == BatchStatus.VERIFIED and batch.verified_ms is not None:
            # L1 verified the batch before this loop tracked it (mark_verified found no record)
            _withdrawal_verified(session, record, batch, batch.verified_ms)
        count += 1
    return count


def last_tracked_batch(session: Session) -> int:
    """The last batch whose withdrawals are recorded (-1: none)."""
    found = session.scalar(select(func.max(WithdrawalRecord.batch_id)))
    return -1 if found is None else int(found)


@dataclass(frozen=True, slots=True)
class ToPost:
    batch_id: int
    status: BatchStatus
    failure: str | None
    public_inputs: bytes
    state_diff: bytes
    old_globals: bytes | None  # None for batch 0: genesis
    proof: bytes | None


def batch_to_post(session: Session, batch_id: int) -> ToPost | None:
    batch = session.get(BatchRecord, batch_id)
    if batch is None:
        return None
    old_globals = None
    if batch_id > 0:
        previous = session.get(BatchRecord, batch_id - 1)
        assert previous is not None, "batches are cut in order"
        old_globals = PublicInputs.decode(previous.public_inputs).globals
    proof = session.get(ProofRecord, batch_id)
    return ToPost(
        batch_id,
        batch.status,
        batch.failure,
        batch.public_inputs,
        batch.state_diff,
        old_globals,
        None if proof is None else proof.proof,
    )


def mark_posted(session: Session, batch_id: int, at_ms: int) -> None:
    batch = session.get(BatchRecord, batch_id)
    if batch is not None and batch.status in (BatchStatus.SEQUENCED, BatchStatus.PROVING,
                                              BatchStatus.PROVEN):  # fmt: skip
        batch.advance(BatchStatus.POSTED, at_ms)


def mark_verified(
    session: Session, batch_id: int, l1_tx: bytes | None, gas: int | None, at_ms: int
) -> None:
    """The batch is verified on L1: its withdrawals are claimable, its deposits final."""
    batch = session.get(BatchRecord, batch_id)
    if batch is None or batch.status == BatchStatus.VERIFIED:
        return
    batch.advance(BatchStatus.VERIFIED, at_ms)
    batch.l1_tx, batch.l1_gas = l1_tx, gas
    for record in session.scalars(
        select(WithdrawalRecord).where(WithdrawalRecord.batch_id == batch_id)
    ):
        _withdrawal_verified(session, record, batch, at_ms)
    for entry in PublicInputs.decode(batch.public_inputs).deposits:
        deposit = session.get(DepositRecord, entry.deposit_id)
        if deposit is not None and deposit.status != DepositStatus.VERIFIED:
            deposit.batch_id = batch_id
            deposit.advance(DepositStatus.VERIFIED, at_ms)
            _observe_deposit(deposit, DepositStatus.VERIFIED, at_ms)


def _withdrawal_verified(
    session: Session, record: WithdrawalRecord, batch: BatchRecord, at_ms: int
) -> None:
    proof = session.get(ProofRecord, batch.id)
    proven_ms = proof.created_ms if proof is not None else batch.proven_ms or at_ms
    advance_withdrawal(record, WithdrawalStatus.PROVEN, proven_ms)
    advance_withdrawal(record, WithdrawalStatus.VERIFIED, at_ms)


def verified_before(session: Session, next_batch_id: int) -> list[int]:
    """Batches L1 has verified that the database does not know as verified yet."""
    return list(
        session.scalars(
            select(BatchRecord.id).where(
                BatchRecord.id < next_batch_id, BatchRecord.status != BatchStatus.VERIFIED
            )
        )
    )


def highest(session: Session) -> tuple[int, int]:
    """(highest sequenced batch, highest proven-or-later batch); -1 for none."""
    sequenced = session.scalar(select(func.max(BatchRecord.id)))
    proven = session.scalar(
        select(func.max(BatchRecord.id)).where(BatchRecord.status.in_(PROVEN_OR_LATER))
    )
    return (-1 if sequenced is None else sequenced), (-1 if proven is None else proven)


# ------------------------------------------------------------------ deposits


@dataclass(frozen=True, slots=True)
class SeenDeposit:
    deposit_id: int
    owner: bytes
    subaccount: int
    amount: int
    block: int
    block_time_ms: int
    tx_hash: bytes
    confirmed: bool


def _observe_deposit(record: DepositRecord, stage: DepositStatus, at_ms: int) -> None:
    start = record.seen_ms or at_ms
    metrics.DEPOSIT_LATENCY.labels(stage.value).observe(max(0, at_ms - start) / 1000)


def record_deposits(session: Session, seen: Sequence[SeenDeposit], at_ms: int) -> None:
    """Deposits seen on L1 (stage seen, at their block's time) and those now confirmed."""
    for d in seen:
        record = session.get(DepositRecord, d.deposit_id)
        if record is None:
            record = DepositRecord(
                l1_id=d.deposit_id,
                owner=d.owner,
                subaccount=d.subaccount,
                amount=d.amount,
                l1_block=d.block,
                l1_tx=d.tx_hash,
            )
            record.advance(DepositStatus.SEEN, min(d.block_time_ms, at_ms))
            session.add(record)
        if d.confirmed and record.status == DepositStatus.SEEN:
            record.advance(DepositStatus.CONFIRMED, at_ms)
            _observe_deposit(record, DepositStatus.CONFIRMED, at_ms)


def mark_credited(session: Session, deposit_id: int, seq: int, at_ms: int) -> None:
    record = session.get(DepositRecord, deposit_id)
    if record is not None and record.status in (DepositStatus.SEEN, DepositStatus.CONFIRMED):
        record.seq = seq
        record.advance(DepositStatus.CREDITED, at_ms)
        _observe_deposit(record, DepositStatus.CREDITED, at_ms)


# ------------------------------------------------------------------ claims


def mark_claimed(session: Session, recipient: bytes, block_time_ms: int, at_ms: int) -> int:
    """A claim on L1 pays everything claimable then: each withdrawal to `recipient` verified
    by the claim's block (block times have a resolution of one second)."""
    claimed = 0
    for record in session.scalars(
        select(WithdrawalRecord).where(
            WithdrawalRecord.recipient == recipient,
            WithdrawalRecord.status == WithdrawalStatus.VERIFIED,
            WithdrawalRecord.verified_ms <= block_time_ms + 999,
        )
    ):
        advance_withdrawal(record, WithdrawalStatus.CLAIMED, at_ms)
        claimed += 1
    return claimed
