"""The batch AIR: the exchange's ledger rules as constraints over the batch trace.

One row per effect on one account (funding settlement of one position, one side of
a trade, liquidation or deleverage, the fee pool's once-per-batch credit of the fee
accumulator, the insurance fund's credit of a liquidation fee, a deposit, a withdrawal,
a forced withdrawal, one half of a transfer, one market of a margin check) plus a row
per oracle or funding tick and padding. docs/stark.md lists every column and
constraint; in short:

- memory: each row reads (account, version, ledger) and writes (account, t, ledger').
  A grand product Z shows writes ⊎ initial leaves = reads ⊎ final leaves, and a
  range check t − version − 1 >= 0 forces every read to see the latest earlier
  write (offline memory checking), so the rows replay each account in order from
  its public old leaf to its public new leaf;
- arithmetic: collateral' = collateral − cz·Z + cv·V exactly (11-bit limbs, checked
  mod p and mod 2^22), Z = X·Y exactly (mod p and mod 2^11), fees
  b·fee = a·Z + rem with 0 <= rem < b (the market's fee rate as a reduced fraction);
- events: a second grand product E binds deposit, withdrawal, forced-withdrawal and
  tick rows, in order, to the public lists;
- ranges: one LogUp sum S over 36 looked-up values per row against the table, two
  values per row: `tab` = 0..1023 and `tab` + 1024.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from perpnet.stark import field as ff
from perpnet.stark.air import FE, Air, Boundary, Frame
from perpnet.stark.batch_layout import (
    KINDS,
    LIMB,
    OFF_SMALL,
    OFF_Z,
    TABLE_ROWS,
    Columns,
    MarketConstants,
)
from perpnet.stark.field import P64, Arr, P

NUM_LOOKUPS = 36
TAG_DEPOSIT, TAG_WITHDRAWAL, TAG_FUNDING, TAG_FORCED = 1, 2, 3, 4
EVENT_SLOTS = 7  # tag, seq, account, four amount limbs; then per market: index, price ticks
INV2 = (P + 1) // 2
MEM_KINDS = tuple(k for k in KINDS if k not in ("k_mg", "k_tick"))
CHECKED = ("k_mk", "k_tk", "k_lcm", "k_wd", "k_xo", "k_fw")
"""Rows after which the account owes a margin check (a chain of k_mg rows)."""
PRICED = ("k_mk", "k_tk", "k_lqm", "k_lcm")
"""Rows that move a position at a price: collateral −= σ·L·T·unit (+ their amount V)."""
POSITION = (*PRICED, "k_lqb", "k_lcb")
"""Rows that move a position by D = σ·X (X >= 0 lots)."""
FEES = ("k_mk", "k_tk", "k_lcm")
"""Rows whose V is a trading fee: fb·V = fa·Z + rem, 0 <= rem < fb; added to the fee pool's
accumulator `fq` and credited to the fee pool (account 1) by a k_fee row."""


@dataclass(frozen=True, slots=True)
class MemoryTerms:
    """Public memory tuples: one per touched account, as columns of ints."""

    acct: Sequence[int]
    version: Sequence[int]
    collateral: Sequence[Sequence[int]]  # 5 limbs each
    nonce: Sequence[int]
    lots: Sequence[Sequence[int]]  # per market
    funding: Sequence[Sequence[int]]  # per market

    def matrix(self) -> Arr:
        """The tuples' components mod p, one row per memory slot: (slots, accounts)."""
        cols: list[Sequence[int]] = [self.acct, self.version]
        cols += [[c[i] for c in self.collateral] for i in range(5)]
        cols.append(self.nonce)
        cols.append([0] * len(self.acct))  # no margin check pending at either end
        m = len(self.lots[0]) if self.lots else 0
        cols += [[x[i] for x in self.lots] for i in range(m)]
        cols += [[x[i] for x in self.funding] for i in range(m)]
        out = np.empty((len(cols), len(self.acct)), dtype=np.uint64)
        for j, col in enumerate(cols):
            try:  # int64 floor-mod by p is the canonical residue, negatives included
                out[j] = np.array(col, dtype=np.int64) % P
            except OverflowError:
                out[j] = [v % P for v in col]
        return out

    def components(self) -> list[FE]:
        return [FE.base(row) for row in self.matrix()]


@dataclass(frozen=True, slots=True)
class BatchPublic:
    """Everything the AIR's boundaries need, derived by the verifier from the statement."""

    statement: bytes
    trace_length: int
    markets: tuple[MarketConstants, ...]
    initial_indices: tuple[int, ...]
    initial_prices: tuple[int, ...]  # oracle prices in ticks
    initial: MemoryTerms
    final: MemoryTerms
    deposits: tuple[tuple[int, int], ...]  # (account, amount)
    withdrawals: tuple[int, ...]
    funding: tuple[tuple[int, ...], ...]  # (indices, price ticks) after each tick
    forced: tuple[tuple[int, int], ...] = ()  # (account, served) of forced entries served > 0


def _dot(weights: Sequence[FE], comps: Sequence[FE]) -> FE:
    """Σ weights_j·comps_j. Constant weights over base columns (the prover's memory and
    event fingerprints) are one exact matrix product instead of a term-by-term sum."""
    if _constant_weights_over_columns(weights, comps):
        n = max(c.v.size for c in comps)
        rows = np.empty((len(comps), n), dtype=np.float64)  # lincomb's input type
        for j, c in enumerate(comps):
            rows[j] = c.v
        is_ext = any(w.is_ext for w in weights)
        coeffs = np.concatenate([w.as_ext() if is_ext else w.v[None, :] for w in weights], axis=1)
        out = ff.lincomb(np.ascontiguousarray(coeffs), rows)
        return FE.ext(out) if is_ext else FE.base(out)
    acc = comps[0] * weights[0]
    for w, c in zip(weights[1:], comps[1:], strict=True):
        acc = acc + w * c
    return acc


def _constant_weights_over_columns(weights: Sequence[FE], comps: Sequence[FE]) -> bool:
    if any(isinstance(x, _Pt) for x in (*weights, *comps)):
        return False
    return (
        all(w.v.size == (4 if w.is_ext else 1) for w in weights)
        and not any(c.is_ext for c in comps)
        and any(c.v.size > 1 for c in comps)
    )


def _fingerprints(gamma: Arr, weights: Arr, mat: Arr) -> Arr:
    """γ − Σ_j weights_j·mat_j for every column of mat ((slots, k) base; weights (4, slots)
    extension): the same values as `gamma - _dot(weights, rows)`, as one array op."""
    prods = (weights[:, :, None] * mat[None, :, :]) % P64  # each < p: slots·p < 2^64
    out: Arr = (gamma + (P64 - prods.sum(axis=1) % P64)) % P64
    return out


def _at_one_point(frame: Frame) -> bool:
    values = [*frame.cur, *frame.nxt, *frame.aux_cur, *frame.aux_nxt, *frame.challenges]
    return bool(values) and all(x.v.size == (4 if x.is_ext else 1) for x in values)


class _Pt(FE):
    """One field element as Python ints (v: a tuple of 4 canonical coefficients of
    F_p[X]/(X^4 - 11), the upper three 0 when not is_ext): FE's arithmetic, exactly,
    without NumPy. Mixing with FE or int gives _Pt (Python tries a subclass's reflected
    operator first)."""

    __slots__ = ()

    @staticmethod
    def of(x: FE | int) -> _Pt:
        if isinstance(x, _Pt):
            return x
        if isinstance(x, FE):
            if x.is_ext:
                a, b, c, d = x.v.reshape(4).tolist()
                return _Pt((a, b, c, d), True)
            return _Pt((x.v.reshape(1).tolist()[0], 0, 0, 0), False)
        return _Pt((int(x) % P, 0, 0, 0), False)

    @staticmethod
    def to_fes(xs: Sequence[FE]) -> list[FE]:
        """Back to FE: (4, 1) extension columns of one array (base values as extension
        elements with zero upper coefficients: the same element)."""
        table = np.array([_Pt.of(x).v for x in xs], dtype=np.uint64).T.copy()
        return [FE(table[:, i : i + 1], True) for i in range(len(xs))]

    def __init__(self, v: tuple[int, int, int, int], is_ext: bool) -> None:
        super().__init__(v, is_ext)  # type: ignore[arg-type]

    def as_ext(self) -> Arr:
        return np.array(self.v, dtype=np.uint64).reshape(4, 1)

    def __add__(self, other: FE | int) -> _Pt:
        o = _Pt.of(other)
        a, b = self.v, o.v
        if self.is_ext or o.is_ext:
            return _Pt(
                ((a[0] + b[0]) % P, (a[1] + b[1]) % P, (a[2] + b[2]) % P, (a[3] + b[3]) % P),
                True,
            )
        return _Pt(((a[0] + b[0]) % P, 0, 0, 0), False)

    __radd__ = __add__

    def __neg__(self) -> _Pt:
        a = self.v
        return _Pt(((-a[0]) % P, (-a[1]) % P, (-a[2]) % P, (-a[3]) % P), self.is_ext)

    def __sub__(self, other: FE | int) -> _Pt:
        return self + (-_Pt.of(other))

    def __rsub__(self, other: FE | int) -> _Pt:
        return _Pt.of(other) + (-self)

    def __mul__(self, other: FE | int) -> _Pt:
        o = _Pt.of(other)
        a, b = self.v, o.v
        if not o.is_ext:
            s = b[0]
            return _Pt((a[0] * s % P, a[1] * s % P, a[2] * s % P, a[3] * s % P), self.is_ext)
        if not self.is_ext:
            s = a[0]
            return _Pt((b[0] * s % P, b[1] * s % P, b[2] * s % P, b[3] * s % P), True)
        a0, a1, a2, a3 = a
        b0, b1, b2, b3 = b
        return _Pt(
            (
                (a0 * b0 + 11 * (a1 * b3 + a2 * b2 + a3 * b1)) % P,
                (a0 * b1 + a1 * b0 + 11 * (a2 * b3 + a3 * b2)) % P,
                (a0 * b2 + a1 * b1 + a2 * b0 + 11 * a3 * b3) % P,
                (a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0) % P,
            ),
            True,
        )

    __rmul__ = __mul__


def _powers(x: FE, k: int) -> list[FE]:
    out = [FE.const(1)]
    for _ in range(k - 1):
        out.append(out[-1] * x)
    return out


class BatchAir(Air):
    name = b"perpnet.batch.v4"
    transition_degree = 3
    num_aux_challenges = 5  # gamma, delta (memory), gamma2, delta2 (events), beta (lookups)

    def __init__(self, public: BatchPublic) -> None:
        self.public = public
        self.trace_length = public.trace_length
        self.cols = Columns(len(public.markets))
        self.width = self.cols.width
        self.pairs = (NUM_LOOKUPS + 1) // 2
        self.aux_width = 4 + self.pairs
        self.mem_slots = 9 + 2 * len(public.markets)
        self.ev_slots = EVENT_SLOTS + 2 * len(public.markets)

    def public_input_bytes(self) -> bytes:
        return self.public.statement

    # ------------------------------------------------------------ expressions

    def _get(self, row: Sequence[FE]) -> Callable[[str], FE]:
        idx = self.cols.index
        return lambda name: row[idx[name]]

    def _limbs(self, c: Callable[[str], FE], prefix: str, k: int) -> FE:
        acc = c(f"{prefix}0")
        for i in range(1, k):
            acc = acc + c(f"{prefix}{i}") * (LIMB**i % P)
        return acc

    def lookups(self, c: Callable[[str], FE]) -> list[FE]:
        """The 36 values every row range-checks into [0, 2^11)."""
        pos = _sum([c(k) for k in POSITION])
        fee = _sum([c(k) for k in FEES])
        half = LIMB // 2
        out = [c("r0"), c("r1")]
        # cn4·32 − 1024·q: |C| < 2^49, and C >= 0 where a margin chain ends (q)
        out += [c(f"cn{i}") for i in range(5)] + [c("cn4") * 32 - c("q") * 1024]
        for p in ("a", "x", "y"):
            out += [c(f"{p}0"), c(f"{p}1")]
            if p == "x":  # X >= 0 on position and margin rows, |X| < 2^20 elsewhere
                out.append(c("x1") * 2 - (pos + c("k_mg")) * 1024)
            else:
                out.append(c(f"{p}1") * 2)
        out += [c(f"z{i}") for i in range(4)] + [c("z3") * 8, c("wp")]
        out += [c(f"v{i}") for i in range(4)]
        out += [c("rem"), c("fb") - 1 - c("rem") + 1 - fee]
        out += [c(f"wc{i}") + half for i in range(2)] + [c(f"wf{i}") + half for i in range(3)]
        out += [c("s0"), c("s1")]  # a margin row's slack below its tier's width
        assert len(out) == NUM_LOOKUPS
        return out

    def _memory(self, c: Callable[[str], FE]) -> tuple[list[FE], list[FE]]:
        """Read and write tuples of a row (same slot order as MemoryTerms)."""
        m = len(self.public.markets)
        kk = _sum([c(k) for k in MEM_KINDS])
        mem = kk + c("mst")
        loop = 1 - mem
        rv = c("t") - 1 - c("r0") - c("r1") * LIMB + loop
        read = [c("acct"), rv] + [c(f"co{i}") for i in range(5)] + [c("nonce")]
        read.append(c("mst") * c("pr"))
        read += [c(f"lo{i}") for i in range(m)] + [c(f"fo{i}") for i in range(m)]
        write = [c("acct"), c("t")]
        write += [c(f"co{i}") + kk * (c(f"cn{i}") - c(f"co{i}")) for i in range(5)]
        write.append(c("nonce") + c("k_wd") + c("k_xo"))
        write.append(c("pw"))
        write += [c(f"lo{i}") + c(f"e{i}") * c("D") for i in range(m)]
        write += [c(f"fn{i}") for i in range(m)]
        return read, write

    def _event(self, c: Callable[[str], FE], d: Sequence[FE]) -> FE:
        m = len(self.public.markets)
        amount = [c(f"v{i}") for i in range(4)]
        dep = _dot(d[:7], [FE.const(TAG_DEPOSIT), c("dseq"), c("acct"), *amount])
        wd = _dot([*d[:2], *d[3:7]], [FE.const(TAG_WITHDRAWAL), c("wseq"), *amount])
        idx = [c(f"I{i}") for i in range(m)] + [c(f"T{i}") for i in range(m)]
        tick = _dot([*d[:2], *d[7 : 7 + 2 * m]], [FE.const(TAG_FUNDING), c("fseq"), *idx])
        forced = _dot(d[:7], [FE.const(TAG_FORCED), c("xseq"), c("acct"), *amount])
        return c("k_dep") * dep + c("k_wd") * wd + c("k_tick") * tick + c("k_fw") * forced

    # ------------------------------------------------------------ constraints

    def transition(self, frame: Frame) -> list[FE]:
        if _at_one_point(frame):
            # the verifier's out-of-domain check: the same code on Python-int elements
            # (NumPy's per-call overhead dominates arrays of one element)
            point = Frame(
                cur=[_Pt.of(x) for x in frame.cur],
                nxt=[_Pt.of(x) for x in frame.nxt],
                aux_cur=[_Pt.of(x) for x in frame.aux_cur],
                aux_nxt=[_Pt.of(x) for x in frame.aux_nxt],
                challenges=[_Pt.of(x) for x in frame.challenges],
            )
            return _Pt.to_fes(self._transition(point))
        return self._transition(frame)

    def _transition(self, frame: Frame) -> list[FE]:
        c, n = self._get(frame.cur), self._get(frame.nxt)
        mk = self.public.markets
        m = len(mk)
        out: list[FE] = []
        kinds = [c(k) for k in KINDS]
        out += [k * (1 - k) for k in kinds]
        s = kinds[0]
        for k in kinds[1:]:
            s = s + k
        out.append(s * (1 - s))
        e = [c(f"e{i}") for i in range(m)]
        out += [x * (1 - x) for x in e]
        tr = _sum([c(k) for k in PRICED])
        pos = tr + c("k_lqb") + c("k_lcb")
        fee = _sum([c(k) for k in FEES])
        act = c("k_set") + pos
        esum = _sum(e)
        mg = c("k_mg")
        out.append(esum - act - mg)
        # counters, table, indices in force
        out.append(n("t") - c("t") - 1)
        dtab = n("tab") - c("tab")
        out.append(dtab * (dtab - 1))
        for seq, kind in (("dseq", "k_dep"), ("wseq", "k_wd"), ("fseq", "k_tick"),
                          ("xseq", "k_fw")):  # fmt: skip
            out.append(n(seq) - c(seq) - n(kind))
        out += [(1 - n("k_tick")) * (n(f"I{i}") - c(f"I{i}")) for i in range(m)]
        out += [(1 - n("k_tick")) * (n(f"T{i}") - c(f"T{i}")) for i in range(m)]
        # sequencing: maker, taker; transfer out, in; liquidated side, counterparty
        pairs = (("k_mk", "k_tk"), ("k_xo", "k_xi"), ("k_lqm", "k_lcm"), ("k_lqb", "k_lcb"))
        for a, b in pairs:
            out.append(c(a) * (1 - n(b)))
            out.append(n(b) * (1 - c(a)))
        # a liquidation fee: the insurance fund (account 0) is credited exactly what the
        # liquidated side (next row, priced against a maker) pays as its V; without that
        # row the liquidated side pays no fee
        out.append(c("k_lfi") * (1 - n("k_lqm")))
        out.append(c("k_lfi") * c("acct"))
        out += [n("k_lqm") * (1 - c("k_lfi")) * n(f"v{i}") for i in range(4)]
        # the fee pool (account 1) is credited exactly the fees accumulated so far
        out.append(c("k_fee") * (c("acct") - 1))
        out += [c("k_fee") * (c(f"v{i}") - c(f"fq{i}")) for i in range(4)]
        # fq' = fq + V on fee rows, 0 after a k_fee row, limb by limb with boolean carries
        fc = [c(f"fc{i}") for i in range(3)]
        for i in range(4):
            step = c(f"fq{i}") - c("k_fee") * c(f"fq{i}") + fee * c(f"v{i}")
            if i:
                step = step + fc[i - 1]
            if i < 3:
                step = step - fc[i] * LIMB
            out.append(n(f"fq{i}") - step)
        out += [x * (1 - x) for x in fc] + [(1 - fee) * x for x in fc]
        # the counterparty row repeats the liquidated side's market, lots and price, with
        # the opposite side; given receipts are moved in full: same |R|, opposite sign
        carry = n("k_tk") + n("k_lcm") + n("k_lcb")
        for name in ("x0", "x1", "y0", "y1", *(f"e{i}" for i in range(m))):
            out.append(carry * (n(name) - c(name)))
        out.append(carry * (n("sig") + c("sig")))
        copy_v = n("k_xi") + n("k_lcb") + c("k_lfi")
        out += [copy_v * (n(f"v{i}") - c(f"v{i}")) for i in range(4)]
        out.append(n("k_lcb") * (n("rho") - c("rho")))
        out.append(c("k_lqb") * (c("rho") * c("rho") - 1))
        # X, Y, D, sq, lots', funding'
        x = c("x0") + c("x1") * LIMB - OFF_SMALL
        y = c("y0") + c("y1") * LIMB - OFF_SMALL
        lots = _dot(e, [c(f"lo{i}") for i in range(m)])
        idx = _dot(e, [c(f"I{i}") for i in range(m)])
        out.append(c("k_set") * (x - lots))
        out.append(c("k_set") * (y - idx + _dot(e, [c(f"fo{i}") for i in range(m)])))
        sig = c("sig")
        out.append((pos + mg) * (sig * sig - 1))
        out.append(pos * (c("D") - sig * x))
        out.append((1 - pos) * c("D"))
        unit = _dot(e, [FE.const(q.quote_unit) for q in mk])
        t2, t3 = c("t2"), c("t3")
        xs = t2 + t3  # an excess row: the part of a position past a later tier's start
        out.append((pos + mg - xs) * (c("sq") - sig * unit))
        out.append(xs * c("sq"))
        a_new = c("a0") + c("a1") * LIMB - OFF_SMALL
        out.append((act + mg) * (a_new - lots - c("D")))
        out.append(act * a_new * (1 - c("nz")))
        out.append(c("G") - c("nz") * idx)
        for i in range(m):
            fo = c(f"fo{i}")
            out.append(c(f"fn{i}") - fo - act * e[i] * (c("G") - fo))
        mi = c("mi")
        maker = c("k_mk") + c("k_lcm")
        # tier selection: the tier-1 fraction on a margin row, replaced on excess rows by
        # that tier's increase (xs rows are margin rows, so mi alone selects the mode)
        sel = [mg * mi, mg - mg * mi, mi * t2, t2 - mi * t2, mi * t3, t3 - mi * t3]

        def fraction(k: int) -> FE:
            return _dot(e, [maker * q.maker_fee[k] + c("k_tk") * q.taker_fee[k]
                            + sel[0] * q.initial[0][k] + sel[1] * q.maintenance[0][k]
                            + sel[2] * (q.initial[1][k] - q.initial[0][k])
                            + sel[3] * (q.maintenance[1][k] - q.maintenance[0][k])
                            + sel[4] * (q.initial[2][k] - q.initial[0][k])
                            + sel[5] * (q.maintenance[2][k] - q.maintenance[0][k])
                            for q in mk])  # fmt: skip

        fa, fb = fraction(0), fraction(1)
        out.append(c("fa") - fa)
        out.append(c("fb") - fb)
        # Z = X·Y exactly: mod p, and mod 2^11 through the low limbs
        z_full = self._limbs(c, "z", 4) - OFF_Z
        out.append(z_full - x * y)
        out.append(c("x0") * c("y0") - c("z0") - c("wp") * LIMB)
        # collateral' = collateral − cz·Z + cv·V: mod p, and mod 2^22 limb by limb
        cz = c("k_set") + tr * c("sq") - mg * c("sq")
        cv = c("k_fee") + c("k_dep") + c("k_xi") + c("k_lfi") + (c("k_lqb") - c("k_lcb")) * c("rho")
        cv = cv - tr - c("k_wd") - c("k_xo") - c("k_fw") - mg
        v_full = self._limbs(c, "v", 4)
        c_old = self._limbs(c, "co", 5)
        c_new = self._limbs(c, "cn", 5)
        out.append(c_new - c_old + cz * z_full - cv * v_full)
        w: FE | int = 0
        for i in range(2):
            d = c(f"cn{i}") - c(f"co{i}") + cz * c(f"z{i}") - cv * c(f"v{i}") + w
            out.append(d - c(f"wc{i}") * LIMB)
            w = c(f"wc{i}")
        # fee: fb·V = fa·Z + rem, mod p and mod 2^33
        out.append(c("fb") * v_full - c("fa") * z_full - c("rem"))
        w = 0
        for i in range(3):
            d = c("fb") * c(f"v{i}") - c("fa") * c(f"z{i}") + w
            if i == 0:
                d = d - c("rem")
            out.append(d - c(f"wf{i}") * LIMB)
            w = c(f"wf{i}")
        out += self._margin(c, n, e, x, y, a_new, pos, mg)
        if frame.challenges:
            out += self._aux_transitions(frame, c, n)
        return out

    def _margin(
        self,
        c: Callable[[str], FE],
        n: Callable[[str], FE],
        e: list[FE],
        x: FE,
        y: FE,
        a_new: FE,
        pos: FE,
        mg: FE,
    ) -> list[FE]:
        """Margin chains: after each trade side, withdrawal and transfer, the account's
        value at the prices in force is at least its tiered requirement."""
        m = len(self.public.markets)
        out: list[FE] = []
        mi, q, mst, trd, sig = c("mi"), c("q"), c("mst"), c("trd"), c("sig")
        out += [v * (1 - v) for v in (mi, q, mst, trd)]
        t2, t3, hx, lb = c("t2"), c("t3"), c("hx"), c("lb")
        xs = t2 + t3
        out += [v * (1 - v) for v in (t2, t3, hx, xs)]
        out += [xs * (1 - mg), hx * (1 - mg), t3 * hx]
        out.append(q * (1 - mg))
        out.append(mst * (1 - mg))
        out.append(trd * mi)
        # chains: consecutive k_mg rows of one account; q ends one, mst starts the next
        out.append(mg * (1 - q) * (1 - n("k_mg")))
        out.append(mg * (1 - q) * (n("acct") - c("acct")))
        out.append(n("mst") - n("k_mg") * (1 - mg + mg * q))
        cont = n("k_mg") - n("k_mg") * n("mst")  # next row continues this chain
        # tiers: a row's X fits its tier's width lb (slack s = lb − X >= 0 by lookup),
        # or hx and the next row of the chain is the same market's next tier, whose X is
        # this X − lb (>= 0 by lookup): a position past a tier start cannot skip a row
        widths = [
            q.widths[0] + t2 * (q.widths[1] - q.widths[0]) + t3 * (q.widths[2] - q.widths[0])
            for q in self.public.markets
        ]
        out.append(mg * (lb - _dot(e, widths)))
        out.append(mg * (1 - hx) * (c("s0") + c("s1") * LIMB - lb + x))
        out.append(hx * (1 - cont))
        out.append(hx * (n("t2") + n("t3") * 2 - t2 - t3 * 2 - 1))
        out += [hx * (n(f"e{i}") - c(f"e{i}")) for i in range(m)]
        nxs = n("t2") + n("t3")
        out.append(nxs * (1 - hx))
        out.append(nxs * (n("x0") + n("x1") * LIMB - x + lb - OFF_SMALL))
        out += [cont * (n(f"co{i}") - c(f"cn{i}")) for i in range(5)]
        out += [cont * (n(f"lo{i}") - c(f"lo{i}")) for i in range(m)]
        out.append(cont * (n("mi") - mi))
        for i in range(m):
            cov = c(f"cov{i}")
            out.append(cov * (1 - cov))
            out.append(n("k_mg") * (n(f"cov{i}") - n(f"e{i}") + nxs * n(f"e{i}")) - cont * cov)
            out.append(q * (1 - cov) * c(f"lo{i}"))
        # a margin row: X = |lots| (excess rows: the part past the tier start), Y = price
        # in ticks, Z = X·Y < 2^40, V = the tier's requirement on Z
        out.append((mg - xs) * (x - sig * a_new))
        out.append(mg * (y - _dot(e, [c(f"T{i}") for i in range(m)])))
        # funding settled before every check and every trade
        settled = pos + c("k_wd") + c("k_xo") + c("k_fw") + mst
        out += [settled * c(f"lo{i}") * (c(f"I{i}") - c(f"fo{i}")) for i in range(m)]
        # pending checks in memory: 1 = initial, 2 = maintenance, 3 + 2·market + (1+σ)/2 =
        # maintenance after a trade of side σ in that market (its row must come first)
        mk_idx = _dot(e, [FE.const(i) for i in range(m)])
        chk = c("k_mk") + c("k_tk") + c("k_lcm")
        out.append(
            c("pw") - c("k_wd") - c("k_xo") - c("k_fw") - chk * mi
            - (chk - chk * mi) * (3 + mk_idx * 2 + (1 + sig) * INV2)
        )  # fmt: skip
        out.append(c("pr") - mi - (1 - mi) * (2 + trd * (1 + mk_idx * 2 + (1 - sig) * INV2)))
        return out

    def _aux_transitions(
        self, frame: Frame, c: Callable[[str], FE], n: Callable[[str], FE]
    ) -> list[FE]:
        gamma, delta, gamma2, delta2, beta = frame.challenges
        zc, ec, sc, h_table, *hs = frame.aux_cur
        zn, en, sn = frame.aux_nxt[:3]
        dm = _powers(delta, self.mem_slots)
        de = _powers(delta2, self.ev_slots)
        read, write = self._memory(c)
        out = [zn * (gamma - _dot(dm, read)) - zc * (gamma - _dot(dm, write))]
        out.append(en - ec * (gamma2 - self._event(c, de)))
        total = hs[0]
        for h in hs[1:]:
            total = total + h
        out.append(sn - sc - total + h_table)
        lo = beta - c("tab")
        hi = lo - TABLE_ROWS
        out.append(h_table * lo * hi - c("mult") * hi - c("mult2") * lo)
        vals = self.lookups(c)
        if len(vals) % 2:
            vals.append(FE.const(0))
        for j, h in enumerate(hs):
            a, b = vals[2 * j], vals[2 * j + 1]
            out.append(h * (beta - a) * (beta - b) - (beta * 2 - a - b))
        return out

    def boundaries(self, challenges: Sequence[FE]) -> list[Boundary]:
        pub = self.public
        cols = self.cols
        last = self.trace_length - 1
        out = [Boundary(cols["t"], 0, 1), Boundary(cols["tab"], 0, 0)]
        out.append(Boundary(cols["tab"], last, TABLE_ROWS - 1))
        for seq in ("dseq", "wseq", "fseq", "xseq", "fq0", "fq1", "fq2", "fq3"):
            out.append(Boundary(cols[seq], 0, 0))
        for i in range(4):
            out.append(Boundary(cols[f"fq{i}"], last, 0))
        out.append(Boundary(cols["xseq"], last, len(pub.forced)))
        out.append(Boundary(cols["dseq"], last, len(pub.deposits)))
        out.append(Boundary(cols["wseq"], last, len(pub.withdrawals)))
        out.append(Boundary(cols["fseq"], last, len(pub.funding)))
        for i, v in enumerate(pub.initial_indices):
            out.append(Boundary(cols[f"I{i}"], 0, v % P))
        for i, v in enumerate(pub.initial_prices):
            out.append(Boundary(cols[f"T{i}"], 0, v % P))
        for k in KINDS:
            out.append(Boundary(cols[k], 0, 0))
            out.append(Boundary(cols[k], last, 0))
        if challenges:
            one, zero = ff.ext(1), ff.ext(0)
            out += [Boundary(0, 0, one, aux=True), Boundary(1, 0, one, aux=True)]
            out.append(Boundary(2, 0, zero, aux=True))
            out.append(Boundary(2, last, zero, aux=True))
            out.append(Boundary(0, last, self.memory_target(challenges), aux=True))
            out.append(Boundary(1, last, self.event_target(challenges), aux=True))
        return out

    # ------------------------------------------------------------ public products

    def memory_target(self, ch: Sequence[FE]) -> Arr:
        """Π fp(final) / Π fp(initial): what the memory product must reach."""
        gamma, delta = ch[0], ch[1]
        if not self.public.initial.acct:
            return ff.ext_one()
        dm = np.concatenate([w.as_ext()[:, :1] for w in _powers(delta, self.mem_slots)], axis=1)
        g = gamma.as_ext()[:, :1]
        fin = ff.ext_prod(_fingerprints(g, dm, self.public.final.matrix()))
        ini = ff.ext_prod(_fingerprints(g, dm, self.public.initial.matrix()))
        return ff.ext_mul(fin, ff.ext_inv(ini))

    def event_target(self, ch: Sequence[FE]) -> Arr:
        """Π fp(public events) · γ2^(rows without an event)."""
        gamma2, delta2 = ch[2], ch[3]
        de = _powers(delta2, self.ev_slots)
        pub = self.public
        m = len(pub.markets)
        terms: list[list[int]] = []
        for j, (acct, amount) in enumerate(pub.deposits, 1):
            terms.append([TAG_DEPOSIT, j, acct, *_v(amount)] + [0] * 2 * m)
        for j, amount in enumerate(pub.withdrawals, 1):
            terms.append([TAG_WITHDRAWAL, j, 0, *_v(amount)] + [0] * 2 * m)
        for j, vec in enumerate(pub.funding, 1):
            terms.append([TAG_FUNDING, j, 0, 0, 0, 0, 0, *vec])
        for j, (acct, amount) in enumerate(pub.forced, 1):
            terms.append([TAG_FORCED, j, acct, *_v(amount)] + [0] * 2 * m)
        prod = ff.ext_one()
        if terms:
            mat = np.array([[v % P for v in row] for row in terms], dtype=np.uint64).T
            weights = np.concatenate([w.as_ext()[:, :1] for w in de], axis=1)
            prod = ff.ext_prod(_fingerprints(gamma2.as_ext()[:, :1], weights, mat))
        quiet = self.trace_length - 1 - len(terms)
        return ff.ext_mul(prod, ff.ext_pow(gamma2.as_ext()[:, :1], quiet))

    # ------------------------------------------------------------ prover side

    def lookup_values(self, main: Arr) -> Arr:
        cols = [FE.base(col) for col in main]
        vals = self.lookups(self._get(cols))
        n = main.shape[1]
        return np.stack([np.broadcast_to(v.v, (n,)) for v in vals])

    def build_aux_trace(self, main: Arr, challenges: Sequence[FE]) -> Arr:
        n = self.trace_length
        gamma, delta, gamma2, delta2, beta = challenges
        cols = [FE.base(col) for col in main]
        c = self._get(cols)
        read, write = self._memory(c)
        dm = _powers(delta, self.mem_slots)
        fr = _full(gamma - _dot(dm, read), n)
        fw = _full(gamma - _dot(dm, write), n)
        ratio = ff.ext_mul(fw, ff.ext_inv(fr))
        z = _running_product(ratio, n)
        ev = _full(gamma2 - self._event(c, _powers(delta2, self.ev_slots)), n)
        e = _running_product(ev, n)
        vals = self.lookup_values(main)
        if len(vals) % 2:
            vals = np.concatenate([vals, np.zeros((1, n), dtype=np.uint64)])
        b = beta.as_ext()
        inv = ff.ext_inv_const_minus(b, vals.reshape(-1)).reshape(4, len(vals), n)
        hs = ff.reduce(inv[:, 0::2] + inv[:, 1::2])  # (4, pairs, n)
        tab = main[self.cols["tab"]]
        t_inv = ff.ext_inv_const_minus(b, np.concatenate([tab, tab + TABLE_ROWS]))
        ht = ff.reduce(
            ff.ext_mul_base(t_inv[:, :n], main[self.cols["mult"]])
            + ff.ext_mul_base(t_inv[:, n:], main[self.cols["mult2"]])
        )
        step = ff.reduce(ff.reduce(hs.sum(axis=1)) + (P64 - ht))
        s = np.zeros((4, n), dtype=np.uint64)
        s[:, 1:] = ff.reduce(np.cumsum(step[:, : n - 1], axis=1))
        aux = np.empty((self.aux_width, 4, n), dtype=np.uint64)
        aux[0], aux[1], aux[2], aux[3] = z, e, s, ht
        aux[4:] = hs.transpose(1, 0, 2)
        return aux


def _sum(xs: Sequence[FE]) -> FE:
    acc = xs[0]
    for x in xs[1:]:
        acc = acc + x
    return acc


def _v(amount: int) -> list[int]:
    return [(amount >> (11 * i)) & (LIMB - 1) for i in range(4)]


def _full(x: FE, n: int) -> Arr:
    return np.ascontiguousarray(np.broadcast_to(x.as_ext(), (4, n)))


def _running_product(terms: Arr, n: int) -> Arr:
    out = np.empty((4, n), dtype=np.uint64)
    out[:, 0] = ff.ext_one()[:, 0]
    out[:, 1:] = ff.ext_cumprod(terms[:, : n - 1])
    return out
