"""The AIR interface: how a statement is written once and checked by prover and verifier.

An AIR is a trace of `width` base-field columns and `trace_length` rows, plus
optional auxiliary columns over the extension field that the prover builds after
drawing random challenges (grand products for permutation and lookup arguments).

Transition constraints are written against `FE`, a small array-like value that is
either base or extension and either a whole column or a single element. The
prover calls `transition` once with whole columns of the constraint-evaluation
domain (NumPy vectors); the verifier calls the very same method with one
extension element per cell at the out-of-domain point. Each returned expression
must vanish on every row except the last (it relates row i to row i+1).

Boundary constraints pin a cell (column, row) to a value; values of auxiliary
columns may depend on the challenges (e.g. the product over a public list).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perpnet.stark import field as ff
from perpnet.stark.field import Arr, P


class FE:
    """Field elements for constraint code: base (shape (k,)) or extension (shape (4, k)).

    Supports +, -, *, unary -, ** (small exponents) with other FEs and ints. Mixing
    base and extension promotes to extension; base-only expressions stay in the base
    field, which is four times cheaper for the prover.
    """

    __slots__ = ("is_ext", "v")

    def __init__(self, v: Arr, is_ext: bool) -> None:
        self.v = v
        self.is_ext = is_ext

    @staticmethod
    def base(values: Arr) -> FE:
        return FE(values.reshape(-1), False)

    @staticmethod
    def ext(values: Arr) -> FE:
        return FE(values.reshape(4, -1), True)

    @staticmethod
    def const(x: int) -> FE:
        return FE(np.array([x % P], dtype=np.uint64), False)

    def as_ext(self) -> Arr:
        """The value as a (4, k) extension array."""
        return self.v if self.is_ext else ff.ext_from_base(self.v)

    # Sums and differences reduce by one conditional subtraction (field.add), which
    # needs reduced operands: every FE value is reduced, and so are trace cells.

    def __add__(self, other: FE | int) -> FE:
        o = _fe(other)
        if self.is_ext or o.is_ext:
            return FE(ff.add(self.as_ext(), o.as_ext()), True)
        return FE(ff.add(self.v, o.v), False)

    __radd__ = __add__

    def __neg__(self) -> FE:
        return FE(ff.neg(self.v), self.is_ext)

    def __sub__(self, other: FE | int) -> FE:
        o = _fe(other)
        if self.is_ext or o.is_ext:
            return FE(ff.sub(self.as_ext(), o.as_ext()), True)
        return FE(ff.sub(self.v, o.v), False)

    def __rsub__(self, other: FE | int) -> FE:
        return _fe(other) - self

    def __mul__(self, other: FE | int) -> FE:
        o = _fe(other)
        if self.is_ext and o.is_ext:
            return FE(ff.ext_mul(self.v, o.v), True)
        if self.is_ext:
            return FE(ff.ext_mul_base(self.v, o.v), True)
        if o.is_ext:
            return FE(ff.ext_mul_base(o.v, self.v), True)
        return FE(ff.mul(self.v, o.v), False)

    __rmul__ = __mul__

    def __pow__(self, e: int) -> FE:
        if e < 0:
            raise ValueError("negative exponent")
        result: FE = FE.const(1)
        base = self
        while e:
            if e & 1:
                result = result * base
            e >>= 1
            if e:
                base = base * base
        return result

    def __repr__(self) -> str:
        kind = "ext" if self.is_ext else "base"
        return f"FE({kind}, shape={self.v.shape})"


def _fe(x: FE | int) -> FE:
    if isinstance(x, FE):
        return x
    return FE.const(int(x))


@dataclass(frozen=True, slots=True)
class Frame:
    """Two consecutive rows (current, next) of the main and auxiliary columns."""

    cur: Sequence[FE]
    nxt: Sequence[FE]
    aux_cur: Sequence[FE]
    aux_nxt: Sequence[FE]
    challenges: Sequence[FE]
    """The auxiliary-trace challenges (extension elements), empty without aux columns."""


@dataclass(frozen=True, slots=True)
class Boundary:
    """Cell (column, row) equals value; aux=True for an auxiliary (extension) column.

    `value` is an int for base cells or an extension element (4, 1) for aux cells.
    """

    column: int
    row: int
    value: int | Arr
    aux: bool = False


class Air(ABC):
    """A statement the STARK proves: subclass, fill the attributes, define constraints."""

    name: bytes = b"air"
    """Domain separator; two different AIRs must never share a name."""
    width: int
    trace_length: int
    transition_degree: int
    """The highest total degree of any transition constraint in the trace cells."""
    aux_width: int = 0
    num_aux_challenges: int = 0

    @abstractmethod
    def public_input_bytes(self) -> bytes:
        """Canonical bytes of every public input; the transcript absorbs them first."""

    @abstractmethod
    def transition(self, frame: Frame) -> list[FE]:
        """Expressions that vanish on every row but the last, for a valid trace."""

    @abstractmethod
    def boundaries(self, challenges: Sequence[FE]) -> list[Boundary]:
        """Cells pinned to values; challenges as in Frame (empty without aux)."""

    def build_aux_trace(self, main: Arr, challenges: Sequence[FE]) -> Arr:
        """(aux_width, 4, trace_length) extension columns; only needed if aux_width > 0."""
        raise NotImplementedError("this AIR has no auxiliary columns")

    def check_shape(self) -> None:
        from perpnet.stark.errors import ParameterError
        from perpnet.stark.params import MAX_LOG_TRACE

        n = self.trace_length
        if n < 8 or n & (n - 1) or n > 1 << MAX_LOG_TRACE:
            raise ParameterError(
                f"trace length must be a power of two in [8, 2^{MAX_LOG_TRACE}], got {n}"
            )
        if self.width < 1 or self.aux_width < 0 or self.transition_degree < 1:
            raise ParameterError("AIR needs width >= 1 and transition degree >= 1")
        if self.aux_width and self.num_aux_challenges < 1:
            raise ParameterError("auxiliary columns need at least one challenge")


def eval_transitions(
    air: Air, cur: Arr, nxt: Arr, aux_cur: Arr | None, aux_nxt: Arr | None, ch: Sequence[FE]
) -> list[FE]:
    """Run air.transition on whole columns: cur/nxt (w, k) base, aux (a, 4, k) ext."""
    frame = Frame(
        cur=[FE.base(c) for c in cur],
        nxt=[FE.base(c) for c in nxt],
        aux_cur=[] if aux_cur is None else [FE.ext(c) for c in aux_cur],
        aux_nxt=[] if aux_nxt is None else [FE.ext(c) for c in aux_nxt],
        challenges=ch,
    )
    return air.transition(frame)
