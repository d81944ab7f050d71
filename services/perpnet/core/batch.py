"""Batches: a run of applied transactions and the public inputs that L1 checks.

The public inputs are what the rollup contract receives as calldata with a
state update (rollup data availability) and what the proof is bound to:

    u64 batch_id | b32 old_root | b32 accounts_root | b32 orders_root
    | u16 len(globals) | globals
    | u32 n | n × deposit  (u64 deposit_id, addr owner, u32 subaccount, u128 amount)
    | u32 n | n × withdrawal (addr recipient, u128 amount)
    | u32 n | n × forced   (u64 request_id, addr owner, u32 subaccount, u128 requested,
                            addr recipient, u128 served)
    | b32 diff_hash

The new state root is not sent: L1 recomputes it as
keccak(accounts_root || orders_root || keccak(globals)), so the parts it reads
(prices and funding indices for the escape hatch, the deposit and forced
request counters) are bound to the root by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.crypto import keccak
from perpnet.core.encoding import (
    POSITION_BYTES,
    Reader,
    Writer,
    account_leaf_bytes,
    encoded_bytes,
)
from perpnet.core.errors import CoreError
from perpnet.core.events import Event, WithdrawalEmitted
from perpnet.core.state import (
    MAX_ACCOUNTS_PER_TX,
    MAX_FILLS_PER_TX,
    AccountDiff,
    BatchFootprint,
    ExchangeState,
    OrderDiff,
    StateDiff,
)
from perpnet.core.txs import Deposit, ForcedWithdrawal, FundingTick, OraclePriceTick, Tx


@dataclass(frozen=True, slots=True)
class DepositEntry:
    deposit_id: int
    owner: bytes
    subaccount: int
    amount: int


@dataclass(frozen=True, slots=True)
class WithdrawalEntry:
    recipient: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class ForcedEntry:
    request_id: int
    owner: bytes
    subaccount: int
    requested: int
    recipient: bytes
    served: int


@dataclass(frozen=True, slots=True)
class PublicInputs:
    batch_id: int
    old_root: bytes
    accounts_root: bytes
    orders_root: bytes
    globals: bytes
    deposits: tuple[DepositEntry, ...]
    withdrawals: tuple[WithdrawalEntry, ...]
    forced: tuple[ForcedEntry, ...]
    diff_hash: bytes

    @property
    def new_root(self) -> bytes:
        return keccak(self.accounts_root + self.orders_root + keccak(self.globals))

    def encode(self) -> bytes:
        w = Writer()
        w.int("u64", self.batch_id)
        for root in (self.old_root, self.accounts_root, self.orders_root):
            w.raw("b32", root)
        w.int("u16", len(self.globals))
        w.parts.append(self.globals)
        w.int("u32", len(self.deposits))
        for d in self.deposits:
            w.int("u64", d.deposit_id)
            w.raw("addr", d.owner)
            w.int("u32", d.subaccount)
            w.int("u128", d.amount)
        w.int("u32", len(self.withdrawals))
        for x in self.withdrawals:
            w.raw("addr", x.recipient)
            w.int("u128", x.amount)
        w.int("u32", len(self.forced))
        for f in self.forced:
            w.int("u64", f.request_id)
            w.raw("addr", f.owner)
            w.int("u32", f.subaccount)
            w.int("u128", f.requested)
            w.raw("addr", f.recipient)
            w.int("u128", f.served)
        w.raw("b32", self.diff_hash)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PublicInputs:
        r = Reader(data)
        batch_id = r.int("u64")
        old_root, accounts_root, orders_root = r.raw("b32"), r.raw("b32"), r.raw("b32")
        global_bytes = r.take(r.int("u16"))
        deposits = tuple(
            DepositEntry(r.int("u64"), r.raw("addr"), r.int("u32"), r.int("u128"))
            for _ in range(r.int("u32"))
        )
        withdrawals = tuple(
            WithdrawalEntry(r.raw("addr"), r.int("u128")) for _ in range(r.int("u32"))
        )
        forced = tuple(
            ForcedEntry(
                r.int("u64"),
                r.raw("addr"),
                r.int("u32"),
                r.int("u128"),
                r.raw("addr"),
                r.int("u128"),
            )
            for _ in range(r.int("u32"))
        )
        diff_hash = r.raw("b32")
        r.done()
        return cls(
            batch_id,
            old_root,
            accounts_root,
            orders_root,
            global_bytes,
            deposits,
            withdrawals,
            forced,
            diff_hash,
        )

    def hash(self) -> bytes:
        return keccak(self.encode())


def encode_diff(diff: StateDiff) -> bytes:
    """The state diff's canonical bytes: touched account leaves and order fills."""
    w = Writer()
    w.int("u32", len(diff.accounts))
    for a in diff.accounts:
        w.int("u32", a.account_id)
        for leaf in (a.old_leaf, a.new_leaf):
            w.int("u16", len(leaf))
            w.parts.append(leaf)
    w.int("u32", len(diff.orders))
    for o in diff.orders:
        w.int("u32", o.slot)
        w.raw("b32", o.order_hash)
        w.int("u128", o.old_filled)
        w.int("u128", o.new_filled)
    return w.getvalue()


def decode_diff(
    data: bytes, old_root: bytes, new_root: bytes, old_globals: bytes, new_globals: bytes
) -> StateDiff:
    """The inverse of encode_diff; the roots and globals travel separately (the public
    inputs hold the new ones, the previous batch the old ones)."""
    r = Reader(data)
    accounts = tuple(
        AccountDiff(r.int("u32"), r.take(r.int("u16")), r.take(r.int("u16")))
        for _ in range(r.int("u32"))
    )
    orders = tuple(
        OrderDiff(r.int("u32"), r.raw("b32"), r.int("u128"), r.int("u128"))
        for _ in range(r.int("u32"))
    )
    r.done()
    return StateDiff(old_root, new_root, old_globals, new_globals, accounts, orders)


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: int
    txs: tuple[Tx, ...]
    diff: StateDiff
    public_inputs: PublicInputs


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """The open batch in the terms its proof statement's size grows with."""

    diff: BatchFootprint
    deposits: int
    withdrawals: int
    forced: int
    price_ticks: int
    funding_ticks: int
    funding_rates: int


class BatchBuilder:
    """Applies transactions to a state and cuts them into batches (the sequencer's core).

    Refused transactions are reported to the caller and left out of the batch.
    """

    def __init__(self, state: ExchangeState, next_batch_id: int = 0) -> None:
        self.state = state
        self.next_batch_id = next_batch_id
        self._txs: list[Tx] = []
        self._deposits: list[DepositEntry] = []
        self._withdrawals: list[WithdrawalEntry] = []
        self._forced: list[ForcedEntry] = []
        self._ticks = [0, 0, 0]  # price ticks, funding ticks, funding rates
        state.begin_batch()

    def __len__(self) -> int:
        return len(self._txs)

    def add(self, tx: Tx, *, authenticated: bool = False) -> tuple[Event, ...] | CoreError:
        try:
            events = self.state.apply(tx, authenticated=authenticated)
        except CoreError as exc:
            return exc
        self._txs.append(tx)
        if isinstance(tx, OraclePriceTick):
            self._ticks[0] += 1
        elif isinstance(tx, FundingTick):
            self._ticks[1] += 1
            self._ticks[2] += len(tx.rates)
        elif isinstance(tx, Deposit):
            self._deposits.append(DepositEntry(tx.deposit_id, tx.owner, tx.subaccount, tx.amount))
        for event in events:
            if isinstance(event, WithdrawalEmitted):
                if isinstance(tx, ForcedWithdrawal):
                    self._forced.append(
                        ForcedEntry(
                            tx.request_id,
                            tx.owner,
                            tx.subaccount,
                            tx.amount,
                            tx.recipient,
                            event.amount,
                        )
                    )
                else:
                    self._withdrawals.append(WithdrawalEntry(event.recipient, event.amount))
        return events

    def footprint(self) -> OpenBatch:
        return OpenBatch(
            self.state.batch_footprint(),
            len(self._deposits),
            len(self._withdrawals),
            len(self._forced),
            *self._ticks,
        )

    def cut(self) -> Batch:
        """Close the open batch (possibly empty) and open the next."""
        state = self.state
        diff = state.end_batch()
        inputs = PublicInputs(
            self.next_batch_id,
            diff.old_root,
            state.account_tree.root(),
            state.order_tree.root(),
            diff.new_globals,
            tuple(self._deposits),
            tuple(self._withdrawals),
            tuple(self._forced),
            keccak(encode_diff(diff)),
        )
        assert inputs.new_root == diff.new_root
        batch = Batch(self.next_batch_id, tuple(self._txs), diff, inputs)
        self.next_batch_id += 1
        self._txs, self._deposits, self._withdrawals, self._forced = [], [], [], []
        self._ticks = [0, 0, 0]
        state.begin_batch()
        return batch


_ENTRY_BYTES = {  # as PublicInputs.encode writes them
    "deposit": encoded_bytes("u64", "addr", "u32", "u128"),
    "withdrawal": encoded_bytes("addr", "u128"),
    "forced": encoded_bytes("u64", "addr", "u32", "u128", "addr", "u128"),
}
_TICK_BYTES = 1 + 2 + 16  # kind, market, value (statement_bytes)
_ORDER_BYTES = 4 + 32 + 16 + 16  # slot, hash, old and new filled (encode_diff)


def _proof_bytes(leaves: int, siblings: int, depth: int) -> int:
    """A length-prefixed MultiProof.to_bytes(), or only the prefix when there are no leaves."""
    return 4 + (2 + 4 + leaves * ((depth + 7) // 8) + 4 + 32 * siblings if leaves else 0)


def statement_size(batch: OpenBatch) -> int:
    """The length of the open batch's proof statement if it were cut now
    (`perpnet.stark.batch_statement.statement_bytes`: public inputs, diff, ticks,
    multiproofs); a sequencer cuts before this passes what the L1 verifier takes
    (stark_lib.MAX_PUBLIC)."""
    d = batch.diff
    ticks = batch.price_ticks + batch.funding_ticks + batch.funding_rates
    entries = (
        batch.deposits * _ENTRY_BYTES["deposit"]
        + batch.withdrawals * _ENTRY_BYTES["withdrawal"]
        + batch.forced * _ENTRY_BYTES["forced"]
    )
    public = 8 + 3 * 32 + 2 + d.globals_bytes + 3 * 4 + entries + 32  # PublicInputs.encode
    new_leaves = d.accounts * account_leaf_bytes(0) + d.new_positions * POSITION_BYTES
    diff = 4 + d.accounts * (4 + 2 + 2) + d.old_leaf_bytes + new_leaves
    diff += 4 + d.orders * _ORDER_BYTES
    return (
        public
        + 2 * 32
        + 4 + d.globals_bytes
        + 8 + diff
        + 4 + ticks * _TICK_BYTES
        + 4 + 4 * d.accounts
        + 4
        + _proof_bytes(d.accounts, d.account_siblings, d.tree_depth)
        + _proof_bytes(d.orders, d.order_siblings, d.tree_depth)
    )  # fmt: skip


def statement_growth_bound(markets: int, tree_depth: int) -> int:
    """The most one transaction can add to `statement_size`: its accounts and fills,
    each new to the batch with a whole new Merkle path, its ticks, a public entry."""
    width = (tree_depth + 7) // 8
    account = 4 + 2 + 2 + 2 * account_leaf_bytes(markets) + 4 + width + 32 * tree_depth
    order = _ORDER_BYTES + width + 32 * tree_depth
    return (
        MAX_ACCOUNTS_PER_TX * account
        + MAX_FILLS_PER_TX * order
        + (markets + 1) * _TICK_BYTES
        + max(_ENTRY_BYTES.values())
    )
