"""prove_batch / verify_batch: the batch statement end to end.

The prover replays the batch on a copy of the pre-batch state with the core state
machine (batch_trace), derives the public values exactly as the verifier will
(batch_statement) and proves the trace against the batch AIR (batch_air). The
verifier needs only the public inputs, the state diff and the BatchProof.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from perpnet.core.batch import Batch, PublicInputs
from perpnet.core.encoding import Reader, Writer
from perpnet.core.errors import CoreError
from perpnet.core.markets import MarketSet
from perpnet.core.state import ExchangeState, StateDiff
from perpnet.stark.batch_air import BatchAir
from perpnet.stark.batch_statement import StatementExtras, derive_public
from perpnet.stark.batch_trace import Apply, Witness, build_witness, set_multiplicities
from perpnet.stark.errors import ProofFormatError, StarkProverError, StarkVerificationError
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams
from perpnet.stark.prover import prove
from perpnet.stark.verifier import verify

MAGIC = b"PNBATCH\x01"


@dataclass(frozen=True, slots=True)
class BatchProof:
    """The statement's extra public data (each piece checked by the verifier) and the STARK."""

    extras: StatementExtras
    stark: bytes

    def encode(self) -> bytes:
        ex = self.extras
        w = Writer()
        w.parts.append(MAGIC)
        w.raw("b32", ex.old_accounts_root)
        w.raw("b32", ex.old_orders_root)
        w.int("u32", len(ex.ticks))
        for kind, market, value in ex.ticks:
            w.int("u8", kind)
            w.int("u16", market)
            w.int("i128", value)
        w.int("u32", len(ex.last_versions))
        for v in ex.last_versions:
            w.int("u32", v)
        w.int("u32", ex.trace_length)
        for blob in (ex.accounts_proof, ex.orders_proof, self.stark):
            w.int("u32", len(blob))
            w.parts.append(blob)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> BatchProof:
        if data[: len(MAGIC)] != MAGIC:
            raise ProofFormatError("not a batch proof (bad magic)")
        r = Reader(data)
        r.take(len(MAGIC))
        try:
            old_a, old_o = r.raw("b32"), r.raw("b32")
            ticks = tuple((r.int("u8"), r.int("u16"), r.int("i128")) for _ in range(r.int("u32")))
            versions = tuple(r.int("u32") for _ in range(r.int("u32")))
            length = r.int("u32")
            blobs = [r.take(r.int("u32")) for _ in range(3)]
            r.done()
        except CoreError as exc:
            raise ProofFormatError(f"batch proof: {exc}") from None
        ex = StatementExtras(old_a, old_o, ticks, versions, length, blobs[0], blobs[1])
        return cls(ex, blobs[2])


@dataclass(slots=True)
class Prepared:
    """A batch ready to prove: the witness (tests may tamper with it) and the statement."""

    air: BatchAir
    witness: Witness
    extras: StatementExtras


def prepare_batch(
    state_before: ExchangeState,
    batch: Batch,
    markets: MarketSet | None = None,
    *,
    in_place: bool = False,
    apply: Apply | None = None,
) -> Prepared:
    """Replay `batch` on a copy of `state_before` (`in_place`: on it, which ends after the
    batch, or part way if this raises; `apply`: build_witness's) and derive the statement.

    Raises StarkProverError if the core refuses a transaction, the replay does not
    reach the batch's new root, or a value lies outside the AIR's bounds.
    """
    state = state_before if in_place else copy.deepcopy(state_before)
    if state.root() != batch.diff.old_root:
        raise StarkProverError("the given state is not the batch's pre-state")
    ids = [a.account_id for a in batch.diff.accounts]
    slots = [o.slot for o in batch.diff.orders]
    acc_proof = state.account_tree.multiproof(ids).to_bytes() if ids else b""
    ord_proof = state.order_tree.multiproof(slots).to_bytes() if slots else b""
    old_a, old_o = state.account_tree.root(), state.order_tree.root()
    witness = build_witness(state, batch.txs, apply)
    if state.root() != batch.diff.new_root:
        raise StarkProverError("replaying the batch does not reach its new root")
    extras = StatementExtras(
        old_a,
        old_o,
        tuple(witness.ticks),
        tuple(witness.last_version.get(i, 0) for i in ids),
        witness.trace.shape[1],
        acc_proof,
        ord_proof,
    )
    try:
        public = derive_public(batch.public_inputs, batch.diff, extras, markets or state.markets)
    except StarkVerificationError as exc:
        raise StarkProverError(f"the batch's public statement does not hold: {exc}") from None
    air = BatchAir(public)
    set_multiplicities(air.cols, witness.trace, air.lookup_values(witness.trace))
    return Prepared(air, witness, extras)


def prove_prepared(
    prep: Prepared,
    params: ProofParams = DEFAULT_PARAMS,
    *,
    strict: bool = True,
    timings: dict[str, float] | None = None,
) -> BatchProof:
    stark = prove(prep.air, prep.witness.trace, params, timings=timings, strict=strict)
    return BatchProof(prep.extras, stark)


def prove_batch(
    state_before: ExchangeState,
    batch: Batch,
    params: ProofParams = DEFAULT_PARAMS,
    *,
    markets: MarketSet | None = None,
    timings: dict[str, float] | None = None,
) -> BatchProof:
    """Prove that `batch` moves `state_before` (not mutated) to the batch's new state."""
    t0 = time.perf_counter()
    prep = prepare_batch(state_before, batch, markets)
    if timings is not None:
        timings["witness"] = time.perf_counter() - t0
    return prove_prepared(prep, params, timings=timings)


def verify_batch(
    public_inputs: PublicInputs,
    diff: StateDiff,
    proof: BatchProof | bytes,
    params: ProofParams = DEFAULT_PARAMS,
    *,
    markets: MarketSet | None = None,
) -> None:
    """Accept or raise StarkVerificationError / ProofFormatError."""
    bp = proof if isinstance(proof, BatchProof) else BatchProof.decode(proof)
    public = derive_public(public_inputs, diff, bp.extras, markets or MarketSet())
    verify(BatchAir(public), bp.stark, params)


def trace_shape(prep: Prepared) -> tuple[int, int, int]:
    """(rows, main columns, auxiliary extension columns)."""
    trace: np.ndarray = prep.witness.trace
    return trace.shape[1], trace.shape[0], prep.air.aux_width
