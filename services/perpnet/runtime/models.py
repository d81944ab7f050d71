"""The persisted records of the running testnet (SQLAlchemy 2 models).

Core objects are stored in their canonical encodings (perpnet.core.encoding)
rather than as columns, so the database can never disagree with what the
prover and L1 read. Columns exist only for what services query by.

Times are integer milliseconds since the epoch (`*_ms`), like the core's
clocks; u128 amounts are exact decimal text (SQLite has no 128-bit integers
and would round them through REAL). Records that move through stages keep one
timestamp per stage, set together with `status` by `advance()`, so latency per
stage (deposit credited, withdrawal claimable, ...) is a subtraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Dialect, ForeignKey, Integer, LargeBinary, String
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class Base(DeclarativeBase):
    pass


class U128(TypeDecorator[int]):
    """An unsigned 128-bit integer stored exactly as decimal text."""

    impl = String(39)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not 0 <= value < 1 << 128:
            raise ValueError(f"{value} is not a u128")
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


def _status(enum: type[StrEnum]) -> SqlEnum:
    """Statuses as their string values in a VARCHAR: no native enum types to migrate."""
    return SqlEnum(
        enum,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Staged:
    """A record that moves forward through ordered stages, stamping the time of each."""

    STAGES: ClassVar[Mapping[Any, str]]  # status -> its timestamp column, in stage order
    status: Any

    def advance(self, status: StrEnum, at_ms: int) -> None:
        """Move to `status` at `at_ms`; going backwards is a bug, so it raises."""
        order = list(self.STAGES)
        if self.status is not None and order.index(status) < order.index(self.status):
            raise ValueError(f"{type(self).__name__}: {self.status} cannot go back to {status}")
        self.status = status
        setattr(self, self.STAGES[status], at_ms)


class TxLogEntry(Base):
    """The sequencer's ordered log of L2 transactions: the source of truth on restart."""

    __tablename__ = "tx_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tx_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    tx: Mapped[bytes] = mapped_column(LargeBinary)  # perpnet.core.encoding.encode_tx
    batch_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    applied_ms: Mapped[int | None] = mapped_column(BigInteger)


class BatchStatus(StrEnum):
    SEQUENCED = "sequenced"
    PROVING = "proving"
    PROVEN = "proven"
    POSTED = "posted"
    VERIFIED = "verified"
    FAILED = "failed"  # the prover refused it (`failure` says why); terminal


class BatchRecord(Staged, Base):
    __tablename__ = "batches"
    STAGES: ClassVar[Mapping[Any, str]] = {
        BatchStatus.SEQUENCED: "sequenced_ms",
        BatchStatus.PROVING: "proving_ms",
        BatchStatus.PROVEN: "proven_ms",
        BatchStatus.POSTED: "posted_ms",
        BatchStatus.VERIFIED: "verified_ms",
        BatchStatus.FAILED: "failed_ms",
    }

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    old_root: Mapped[bytes] = mapped_column(LargeBinary(32))
    new_root: Mapped[bytes] = mapped_column(LargeBinary(32))
    first_seq: Mapped[int] = mapped_column(BigInteger)  # the tx_log range it covers
    last_seq: Mapped[int] = mapped_column(BigInteger)
    public_inputs: Mapped[bytes] = mapped_column(LargeBinary)  # core.batch.PublicInputs.encode
    state_diff: Mapped[bytes] = mapped_column(LargeBinary)  # core.batch.encode_diff
    status: Mapped[BatchStatus] = mapped_column(_status(BatchStatus), index=True)
    sequenced_ms: Mapped[int | None] = mapped_column(BigInteger)
    proving_ms: Mapped[int | None] = mapped_column(BigInteger)
    proven_ms: Mapped[int | None] = mapped_column(BigInteger)
    posted_ms: Mapped[int | None] = mapped_column(BigInteger)
    verified_ms: Mapped[int | None] = mapped_column(BigInteger)
    failed_ms: Mapped[int | None] = mapped_column(BigInteger)
    failure: Mapped[str | None] = mapped_column(String(500))  # why the prover refused it
    l1_tx: Mapped[bytes | None] = mapped_column(LargeBinary(32))  # the state update on L1
    l1_gas: Mapped[int | None] = mapped_column(BigInteger)  # gas the state update used


class ProofRecord(Base):
    __tablename__ = "proofs"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    proof: Mapped[bytes] = mapped_column(LargeBinary)
    prover_id: Mapped[str] = mapped_column(String(64))
    wait_ms: Mapped[int] = mapped_column(BigInteger)  # queued until a worker took it
    prove_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class DepositStatus(StrEnum):
    SEEN = "seen"  # the L1 event, not yet final
    CONFIRMED = "confirmed"  # K confirmations deep
    CREDITED = "credited"  # its Deposit transaction is in the log
    VERIFIED = "verified"  # the batch that consumed it is verified on L1


class DepositRecord(Staged, Base):
    __tablename__ = "deposits"
    STAGES: ClassVar[Mapping[Any, str]] = {
        DepositStatus.SEEN: "seen_ms",
        DepositStatus.CONFIRMED: "confirmed_ms",
        DepositStatus.CREDITED: "credited_ms",
        DepositStatus.VERIFIED: "verified_ms",
    }

    l1_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    owner: Mapped[bytes] = mapped_column(LargeBinary(20), index=True)
    subaccount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(U128)
    l1_block: Mapped[int] = mapped_column(BigInteger)
    l1_tx: Mapped[bytes] = mapped_column(LargeBinary(32))
    seq: Mapped[int | None] = mapped_column(BigInteger)  # the crediting tx_log entry
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[DepositStatus] = mapped_column(_status(DepositStatus), index=True)
    seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    confirmed_ms: Mapped[int | None] = mapped_column(BigInteger)
    credited_ms: Mapped[int | None] = mapped_column(BigInteger)
    verified_ms: Mapped[int | None] = mapped_column(BigInteger)


class WithdrawalStatus(StrEnum):
    REQUESTED = "requested"  # debited on L2 by a Withdraw (or ForcedWithdrawal) tx
    BATCHED = "batched"
    PROVEN = "proven"
    VERIFIED = "verified"  # claimable on L1
    CLAIMED = "claimed"


class WithdrawalRecord(Staged, Base):
    __tablename__ = "withdrawals"
    STAGES: ClassVar[Mapping[Any, str]] = {
        WithdrawalStatus.REQUESTED: "requested_ms",
        WithdrawalStatus.BATCHED: "batched_ms",
        WithdrawalStatus.PROVEN: "proven_ms",
        WithdrawalStatus.VERIFIED: "verified_ms",
        WithdrawalStatus.CLAIMED: "claimed_ms",
    }

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account: Mapped[int] = mapped_column(BigInteger, index=True)
    recipient: Mapped[bytes] = mapped_column(LargeBinary(20), index=True)
    amount: Mapped[int] = mapped_column(U128)
    seq: Mapped[int | None] = mapped_column(BigInteger)  # the debiting tx_log entry
    batch_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    status: Mapped[WithdrawalStatus] = mapped_column(_status(WithdrawalStatus), index=True)
    requested_ms: Mapped[int | None] = mapped_column(BigInteger)
    batched_ms: Mapped[int | None] = mapped_column(BigInteger)
    proven_ms: Mapped[int | None] = mapped_column(BigInteger)
    verified_ms: Mapped[int | None] = mapped_column(BigInteger)
    claimed_ms: Mapped[int | None] = mapped_column(BigInteger)


class OrderStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"  # a conditional order waiting for its trigger
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class RestingOrder(Base):
    """The matcher's live book, so a restart rebuilds it with time priority (by `seq`)."""

    __tablename__ = "resting_orders"

    hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    signed_order: Mapped[bytes] = mapped_column(LargeBinary)  # encode_order(order) + signature
    market_id: Mapped[int] = mapped_column(Integer, index=True)
    owner: Mapped[bytes] = mapped_column(LargeBinary(20), index=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)  # placement order
    remaining: Mapped[int] = mapped_column(U128)
    status: Mapped[OrderStatus] = mapped_column(_status(OrderStatus), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class StateCheckpoint(Base):
    """The whole exchange state at a batch boundary: recovery replays only the log after it.

    `state` is perpnet.core.snapshot's encoding, which carries its own version,
    root and checksum; `root` repeats the batch's new_root so that a checkpoint
    can be checked against the batch row without decoding it.
    """

    __tablename__ = "state_checkpoints"

    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)  # the last tx_log entry the state includes
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_ms: Mapped[int] = mapped_column(BigInteger)
