"""The batch witness: replay a batch with the core state machine and lay out its rows.

The exchange rules are never re-implemented here: every transaction is applied
with `ExchangeState.apply(tx, authenticated=True)`, and the rows only decompose
what the core did (funding settlement per position, then the transaction's own
effect) into the steps the AIR constrains. The decomposition is checked against
the core's resulting accounts, so a mismatch is an error, never a silent proof.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from perpnet.core.accounts import FEE_POOL_ID, FIRST_USER_ID, INSURANCE_FUND_ID, Account
from perpnet.core.errors import CoreError
from perpnet.core.events import Deleveraged, Event, Filled, Liquidated, WithdrawalEmitted
from perpnet.core.state import ExchangeState
from perpnet.core.txs import (
    Deleverage,
    Deposit,
    ForcedWithdrawal,
    FundingTick,
    Liquidate,
    OraclePriceTick,
    Trade,
    Transfer,
    Tx,
    Withdraw,
)
from perpnet.stark.batch_layout import (
    C_BITS,
    KINDS,
    LIMB,
    LIMB_BITS,
    MAX_ACCOUNT_ID,
    MAX_NONCE,
    MAX_TRACE,
    MIN_TRACE,
    OFF_C,
    OFF_SMALL,
    OFF_Z,
    SMALL_BITS,
    TABLE_ROWS,
    TABLE_SIZE,
    V_BITS,
    Columns,
    MarketConstants,
    market_constants,
    small_limbs,
)
from perpnet.stark.errors import StarkProverError
from perpnet.stark.field import P

TICK_ORACLE = 1
TICK_FUNDING = 2
_LIMB_SHIFTS = (0, LIMB_BITS, 2 * LIMB_BITS, 3 * LIMB_BITS)
_SCRATCH = ("X", "Y", "V", "C", "C'")
"""Cells past a row's last column, each holding exactly the bits its limbs keep: X and
Y plus 2^20 (22 bits), V (44 bits), collateral before and after plus 2^49 (55 bits)."""
_SMALL_MASK = (1 << (2 * LIMB_BITS)) - 1
_V_MASK = (1 << (4 * LIMB_BITS)) - 1
_C_MASK = (1 << (5 * LIMB_BITS)) - 1


@dataclass(slots=True)
class Ledger:
    """The part of an account the AIR tracks: collateral, nonce, lots and funding snapshots."""

    collateral: int
    nonce: int
    lots: list[int]
    funding: list[int]

    def copy(self) -> Ledger:
        return Ledger(self.collateral, self.nonce, list(self.lots), list(self.funding))


def ledger_of(account: Account | None, consts: Sequence[MarketConstants]) -> Ledger:
    """An account's tracked values; absent positions are (0 lots, funding snapshot 0)."""
    if account is None:
        return Ledger(0, 0, [0] * len(consts), [0] * len(consts))
    lots, funding = [], []
    for c in consts:
        pos = account.positions.get(c.market_id)
        if pos is None:
            lots.append(0)
            funding.append(0)
        else:
            if pos.size % c.step_size:
                raise StarkProverError(f"account {account.account_id}: position off step")
            lots.append(pos.size // c.step_size)
            funding.append(pos.funding_index)
    return Ledger(account.collateral, account.nonce, lots, funding)


@dataclass(slots=True)
class Witness:
    """The main trace and what the statement needs from the prover's side."""

    trace: np.ndarray
    last_version: dict[int, int]
    ticks: list[tuple[int, int, int]]
    """(kind, market, price or funding rate) in batch order, for the verifier's replay."""
    rows_used: int
    kinds: dict[str, int] = field(default_factory=dict)


class _Rows:
    """Accumulates rows as lists of integers indexed by column, then packs them.

    A row starts as a copy of the defaults (zero everywhere but `a1`, the offset limb
    of A = 0, and `mi` = 1, a pending initial check) and the counters in force; code
    sets cells through `self.i`, the column index by name. Plain lists keep the
    per-row Python work (thousands of rows per batch) to indexing. Scratch cells past
    the last column hold the row's X, Y, V and collaterals (`_SCRATCH`); the columns
    derived from a row's cells alone (pending checks, products, limbs, carries) are
    computed for all rows at once by `_derive` when packing.
    """

    def __init__(
        self,
        cols: Columns,
        consts: Sequence[MarketConstants],
        indices: list[int],
        prices: list[int],
    ):
        self.cols = cols
        self.consts = consts
        self.m = len(consts)
        self.i = i = cols.index
        self.rows: list[list[int]] = []
        self.last: dict[int, int] = {}
        self.indices = list(indices)
        self.prices = list(prices)
        self.seq = {"dseq": 0, "wseq": 0, "fseq": 0, "xseq": 0}
        self.defaults = [0] * (cols.width + len(_SCRATCH))
        self.defaults[i["a1"]] = OFF_SMALL >> LIMB_BITS
        self.defaults[i["mi"]] = 1
        self.c_e = [i[f"e{k}"] for k in range(self.m)]
        self.lo, self.fo, self.fn, self.cov, self.idx, self.ticks = (
            self._span(prefix) for prefix in ("lo", "fo", "fn", "cov", "I", "T")
        )
        self.c_xyv = [cols.width + _SCRATCH.index(k) for k in ("X", "Y", "V")]
        self.c_coll = [cols.width + _SCRATCH.index(k) for k in ("C", "C'")]
        self.pad()

    def _span(self, prefix: str) -> slice:
        """The columns prefix0..prefix{m-1}: consecutive, so a row takes a list at once."""
        first = self.i[f"{prefix}0"]
        assert [self.i[f"{prefix}{k}"] for k in range(self.m)] == list(range(first, first + self.m))
        return slice(first, first + self.m)

    def _base(self) -> list[int]:
        row = self.defaults.copy()
        i = self.i
        row[i["t"]] = len(self.rows) + 1
        for name, v in self.seq.items():
            row[i[name]] = v
        row[self.idx] = self.indices
        row[self.ticks] = self.prices
        return row

    def pad(self, kind: str | None = None) -> None:
        """A memory no-op: reads and writes the same tuple at version t (account 0, zeros)."""
        row = self._base()
        if kind is not None:
            row[self.i[kind]] = 1
        self._ledger(row, Ledger(0, 0, [0] * self.m, [0] * self.m), 0)
        self._fill(row)
        self.rows.append(row)

    def pad_to(self, n: int) -> None:
        """Trailing padding up to n rows: copies of one padding row with t counting on
        (nothing else in a padding row depends on its position)."""
        if len(self.rows) >= n:
            return
        self.pad()
        template = self.rows[-1]
        ct = self.i["t"]
        for t in range(len(self.rows) + 1, n + 1):
            row = template.copy()
            row[ct] = t
            self.rows.append(row)

    def _ledger(
        self, row: list[int], before: Ledger, collateral_after: int, collateral: int | None = None
    ) -> None:
        """Cells of the ledger read (`collateral`, if given, instead of before's) and the
        collateral written; funding written defaults to the funding read."""
        c_old = before.collateral if collateral is None else collateral
        row[self.c_coll[0]] = (c_old + OFF_C) & _C_MASK  # limbs: _derive
        row[self.c_coll[1]] = (collateral_after + OFF_C) & _C_MASK
        row[self.i["nonce"]] = before.nonce
        row[self.lo] = before.lots
        row[self.fo] = row[self.fn] = before.funding

    def _touch(self, row: list[int], acct: int) -> None:
        """Memory read of `acct` at its last version (r = t − 1 − version) and write at t."""
        i = self.i
        t = row[i["t"]]
        r = t - 1 - self.last.get(acct, 0)
        row[i["r0"]], row[i["r1"]] = r & (LIMB - 1), r >> LIMB_BITS
        self.last[acct] = t

    def _fill(self, row: list[int], x_val: int = 0, y_val: int = 0, v_val: int = 0) -> None:
        """Record the row's X, Y and V: 22-bit offset X and Y and 44-bit V, exactly the
        bits their limbs keep (the derived columns follow in `_derive`)."""
        cx, cy, cv = self.c_xyv
        row[cx] = (x_val + OFF_SMALL) & _SMALL_MASK
        row[cy] = (y_val + OFF_SMALL) & _SMALL_MASK
        row[cv] = v_val & _V_MASK

    def mem(
        self,
        kind: str,
        acct: int,
        before: Ledger,
        after: Ledger,
        *,
        market: int | None = None,
        x: int = 0,
        y: int = 0,
        v: int = 0,
        **extra: int,
    ) -> None:
        """A memory row of `kind` on `acct` (before -> after), with X, Y, V = x, y, v and
        other cells from `extra` (by column name)."""
        i = self.i
        row = self._base()
        row[i[kind]] = 1
        row[i["acct"]] = acct
        self._touch(row, acct)
        self._ledger(row, before, after.collateral)
        row[self.fn] = after.funding
        if market is not None:
            row[self.c_e[market]] = 1
        for name, value in extra.items():
            row[i[name]] = value
        if kind in ("k_set", "k_mk", "k_tk", "k_lqm", "k_lcm", "k_lqb", "k_lcb"):
            assert market is not None
            lots = after.lots[market]
            row[i["a0"]], row[i["a1"]] = small_limbs(lots)
            row[i["nz"]] = 1 if lots else 0
            row[i["G"]] = self.indices[market] if lots else 0
        self._fill(row, x, y, v)
        self.rows.append(row)

    def margin(self, acct: int, led: Ledger, initial: bool, traded: tuple[int, int] | None) -> None:
        """The chain of k_mg rows checking `led` (the account's state right now): one row
        per held market (the traded one first after a reducing trade) and one more per
        later margin tier the position reaches, at least one row."""
        markets = [i for i in range(self.m) if led.lots[i]]
        if traded is not None and not initial:
            markets = [traded[0]] + [i for i in markets if i != traded[0]]
        if not markets:
            markets = [0]
        acc = led.collateral
        cov = [0] * self.m
        rows: list[tuple[int, int, int, int]] = []  # (market, tier, X, side)
        for j, i in enumerate(markets):
            lots = led.lots[i]
            trd = 1 if j == 0 and traded is not None and not initial else 0
            sign = -traded[1] if trd and traded is not None else (1 if lots >= 0 else -1)
            x = sign * lots
            if x < 0:
                raise StarkProverError("internal error: margin row sign")
            rows.append((i, 0, x, sign))
            for tier in (1, 2):
                x -= self.consts[i].widths[tier - 1]
                if x <= 0:
                    break
                rows.append((i, tier, x, sign))
        ix = self.i
        for j, (i, tier, x, sign) in enumerate(rows):
            c = self.consts[i]
            ticks = self.prices[i]
            z = x * ticks
            fa, fb = (c.initial if initial else c.maintenance)[tier]
            req = -(-z * fa // fb)
            width = c.widths[tier]
            hx = int(x > width)
            if tier == 0:
                cov[i] = 1
            before = acc
            acc = acc + (sign * c.quote_unit * z if tier == 0 else 0) - req
            if not -(1 << C_BITS) < acc < 1 << C_BITS:
                raise StarkProverError(f"account {acct}: margin sum beyond the AIR's ±2^49")
            row = self._base()
            row[ix["k_mg"]] = 1
            row[ix["acct"]] = acct
            if j == 0:
                self._touch(row, acct)
                row[ix["mst"]] = 1
            self._ledger(row, led, acc, collateral=before)
            row[self.c_e[i]] = 1
            row[ix["a0"]], row[ix["a1"]] = small_limbs(led.lots[i])
            row[ix["mi"]] = int(initial)
            row[ix["trd"]] = int(j == 0 and traded is not None and not initial)
            row[ix["q"]] = int(j == len(rows) - 1)
            row[self.cov] = cov
            slack = 0 if hx else width - x
            sq = sign * c.quote_unit if tier == 0 else 0
            for name, value in (
                ("t2", int(tier == 1)), ("t3", int(tier == 2)), ("hx", hx), ("lb", width),
                ("s0", slack & (LIMB - 1)), ("s1", slack >> LIMB_BITS), ("sig", sign),
                ("sq", sq), ("fa", fa), ("fb", fb), ("rem", fb * req - fa * z),
            ):  # fmt: skip
                row[ix[name]] = value
            self._fill(row, x, ticks, req)
            self.rows.append(row)


def _derive(cols: Columns, a: np.ndarray) -> None:
    """Fill, for every row of `a` at once, the columns the row's other cells determine:
    pending checks pr and pw (as the AIR's pending-check constraints define them), the
    limbs of the collaterals, X, Y, Z = X·Y and V, and the carries wp, wc, wf. `a` is
    (n, width + len(_SCRATCH)) integers (int64, or Python ints if some cell is too
    wide), the scratch cells last."""
    i = cols.index

    def col(name: str) -> np.ndarray:
        return a[:, i[name]]

    def put(name: str, values: np.ndarray) -> None:
        a[:, i[name]] = values

    w = cols.width
    xs, ys, v, c_old, c_new = (a[:, w + k] for k in range(len(_SCRATCH)))
    mask = LIMB - 1
    for k in range(5):
        put(f"co{k}", (c_old >> (LIMB_BITS * k)) & mask)
        put(f"cn{k}", (c_new >> (LIMB_BITS * k)) & mask)
    e = a[:, [i[f"e{k}"] for k in range(cols.num_markets)]]
    market = (e != 0).argmax(axis=1)  # the row's market, 0 if none
    mi, trd = col("mi"), col("trd")
    sig = np.where(col("sig") == P - 1, -1, col("sig"))
    put("pr", mi + (1 - mi) * (2 + trd * (1 + 2 * market + (1 - sig) // 2)))
    checked = (col("k_mk") != 0) | (col("k_tk") != 0) | (col("k_lcm") != 0)
    paid_out = (col("k_wd") != 0) | (col("k_xo") != 0) | (col("k_fw") != 0)
    pw = np.where(paid_out, 1, 0)
    put("pw", np.where(checked, mi + (1 - mi) * (3 + 2 * market + (1 + sig) // 2), pw))
    x0, x1, y0, y1 = xs & mask, xs >> LIMB_BITS, ys & mask, ys >> LIMB_BITS
    for name, limb in (("x0", x0), ("x1", x1), ("y0", y0), ("y1", y1)):
        put(name, limb)
    z = (xs - OFF_SMALL) * (ys - OFF_SMALL) + OFF_Z
    zl = [(z >> s) & mask for s in _LIMB_SHIFTS]
    vl = [(v >> s) & mask for s in _LIMB_SHIFTS]
    for k in range(4):
        put(f"z{k}", zl[k])
        put(f"v{k}", vl[k])
    put("wp", _exact_div(x0 * y0 - zl[0], "product carry"))
    kd = {name: col(name) for name in KINDS}
    tr = kd["k_mk"] + kd["k_tk"] + kd["k_lqm"] + kd["k_lcm"]
    cz = kd["k_set"] + (tr - kd["k_mg"]) * col("sq")
    cv = kd["k_fee"] + kd["k_dep"] + kd["k_xi"] + kd["k_lfi"]
    cv = cv + (kd["k_lqb"] - kd["k_lcb"]) * col("rho")
    cv = cv - (tr + kd["k_wd"] + kd["k_xo"] + kd["k_fw"] + kd["k_mg"])
    carry: np.ndarray | int = 0
    for j in range(2):
        carry = _exact_div(
            col(f"cn{j}") - col(f"co{j}") + cz * zl[j] - cv * vl[j] + carry, "collateral carry"
        )
        put(f"wc{j}", carry)
    fa, fb = col("fa"), col("fb")
    carry = -col("rem")
    for j in range(3):
        carry = _exact_div(fb * vl[j] - fa * zl[j] + carry, "fee carry")
        put(f"wf{j}", carry)


def _exact_div(value: np.ndarray, what: str) -> np.ndarray:
    if np.any(value % LIMB):
        raise StarkProverError(f"internal error: {what} is not exact")
    out: np.ndarray = value // LIMB
    return out


def _check_ledger(acct: int, ledger: Ledger) -> None:
    if not 0 <= acct < MAX_ACCOUNT_ID:
        raise StarkProverError(f"account id {acct} is beyond the AIR's 2^30 bound")
    if not -(1 << C_BITS) < ledger.collateral < 1 << C_BITS:
        raise StarkProverError(f"account {acct}: collateral beyond the AIR's ±2^49 bound")
    if not 0 <= ledger.nonce < MAX_NONCE:
        raise StarkProverError(f"account {acct}: nonce beyond the AIR's 2^30 bound")
    for lots in ledger.lots:
        if not -(1 << SMALL_BITS) < lots < 1 << SMALL_BITS:
            raise StarkProverError(f"account {acct}: position beyond the AIR's ±2^20 lots")


def _check_small(value: int, what: str) -> None:
    if not -(1 << SMALL_BITS) < value < 1 << SMALL_BITS:
        raise StarkProverError(f"{what} {value} is beyond the AIR's ±2^20 bound")


def _check_amount(value: int, what: str) -> None:
    if not 0 <= value < 1 << V_BITS:
        raise StarkProverError(f"{what} {value} is beyond the AIR's [0, 2^44) bound")


Apply = Callable[[Tx], tuple[Event, ...]]
"""How the witness applies a transaction to its state (raising CoreError if refused)."""


class _Builder:
    def __init__(self, state: ExchangeState, apply: Apply | None = None) -> None:
        self.state = state
        self.apply_tx = apply or partial(state.apply, authenticated=True)
        self.consts = market_constants(state.markets)
        self.ids = [c.market_id for c in self.consts]
        self.cols = Columns(len(self.consts))
        self.rows = _Rows(
            self.cols,
            self.consts,
            [state.funding_index[m] for m in self.ids],
            [self.ticks_of(i, state.prices.get(m, 0)) for i, m in enumerate(self.ids)],
        )
        self.ledgers: dict[int, Ledger] = {}
        self.ticks: list[tuple[int, int, int]] = []
        self.fees = 0
        """Fees accumulated (fq) and not yet credited to the fee pool by a k_fee row."""

    def ticks_of(self, i: int, price: int) -> int:
        tick = self.consts[i].tick_size
        if price % tick or not 0 <= price // tick < 1 << SMALL_BITS:
            raise StarkProverError(
                f"oracle price {price} of market {self.consts[i].market_id} is off tick or "
                "beyond 2^20 ticks: not supported by the batch AIR"
            )
        return price // tick

    def known(self, owner: bytes, subaccount: int) -> int:
        """The id the core uses (or will create) for an account, its ledger loaded now."""
        acct = self.state.account_id(owner, subaccount)
        acct = len(self.state.accounts) if acct is None else acct
        self.ledger(acct)
        return acct

    def ledger(self, acct: int) -> Ledger:
        led = self.ledgers.get(acct)
        if led is None:
            led = ledger_of(self.state.accounts.get(acct), self.consts)
            _check_ledger(acct, led)
            self.ledgers[acct] = led
        return led

    def settle(self, acct: int) -> None:
        """One k_set row per held position whose funding snapshot is stale."""
        led = self.ledger(acct)
        for i in range(len(self.consts)):
            lots, index = led.lots[i], self.rows.indices[i]
            if lots == 0 or led.funding[i] == index:
                continue
            gap = index - led.funding[i]
            _check_small(gap, "funding index gap")
            after = led.copy()
            after.collateral -= lots * gap
            after.funding[i] = index
            self.rows.mem("k_set", acct, led, after, market=i, x=lots, y=gap)
            self.ledgers[acct] = led = after

    def credit(self, kind: str, acct: int, amount: int, **extra: int) -> None:
        led = self.ledger(acct)
        after = led.copy()
        sign = 1 if kind in ("k_fee", "k_dep", "k_xi", "k_lfi") else -1
        after.collateral += sign * amount
        if kind in ("k_wd", "k_xo"):
            after.nonce += 1
        _check_amount(amount, "amount")
        self.rows.mem(kind, acct, led, after, v=amount, **extra)
        self.ledgers[acct] = after

    def side(
        self, kind: str, acct: int, i: int, sign: int, lots: int, ticks: int, fee: int
    ) -> None:
        """A priced position move: collateral −= σ·L·T·unit + fee (k_mk, k_tk, k_lcm: a
        trading fee, accumulated for the fee pool; k_lqm: the liquidation fee)."""
        c = self.consts[i]
        fa, fb = {"k_tk": c.taker_fee, "k_lqm": (0, 0)}.get(kind, c.maker_fee)
        if kind != "k_lqm":
            self.fees += fee
        led = self.ledger(acct)
        after = led.copy()
        after.lots[i] += sign * lots
        after.collateral -= sign * lots * ticks * c.quote_unit + fee
        after.funding[i] = self.rows.indices[i] if after.lots[i] else 0
        _check_small(after.lots[i], "position")
        _check_amount(fee, "fee")
        rem = fb * fee - fa * lots * ticks
        old, new = led.lots[i], after.lots[i]
        increasing = abs(new) > abs(old) or (old != 0 and new != 0 and (old > 0) != (new > 0))
        extra = {"sig": sign, "sq": sign * c.quote_unit, "D": sign * lots, "fa": fa}
        extra["mi"] = int(increasing)
        self.rows.mem(
            kind, acct, led, after, market=i, x=lots, y=ticks, v=fee, fb=fb, rem=rem, **extra
        )
        self.ledgers[acct] = after

    def given(self, kind: str, acct: int, i: int, sign: int, lots: int, receipt: int) -> None:
        """A position move for a given receipt (k_lqb receives it, k_lcb pays it)."""
        c = self.consts[i]
        led = self.ledger(acct)
        after = led.copy()
        after.lots[i] += sign * lots
        after.collateral += receipt if kind == "k_lqb" else -receipt
        after.funding[i] = self.rows.indices[i] if after.lots[i] else 0
        _check_small(after.lots[i], "position")
        _check_amount(abs(receipt), "receipt")
        rho = 1 if receipt >= 0 else -1
        extra = {"sig": sign, "sq": sign * c.quote_unit, "D": sign * lots, "rho": rho}
        self.rows.mem(kind, acct, led, after, market=i, x=lots, y=0, v=abs(receipt), **extra)
        self.ledgers[acct] = after

    def fee_pool(self) -> tuple[int, Ledger]:
        """The fee pool's ledger as the core sees it: credited with the accumulated fees."""
        led = self.ledger(FEE_POOL_ID).copy()
        led.collateral += self.fees
        return FEE_POOL_ID, led

    def credit_fees(self) -> None:
        """One k_fee row: the fee pool receives every fee accumulated so far (fq)."""
        if self.fees:
            amount, self.fees = self.fees, 0
            self.credit("k_fee", FEE_POOL_ID, amount)

    def liquidate(self, tx: Liquidate) -> None:
        st = self.state
        acct = tx.account_id
        self.ledger(acct)
        if tx.maker is not None:
            cp = self.known(tx.maker.order.owner, tx.maker.order.subaccount)
        else:
            cp = INSURANCE_FUND_ID
        self.ledger(cp)
        self.ledger(INSURANCE_FUND_ID)
        self.ledger(FEE_POOL_ID)
        pool = st.accounts[FEE_POOL_ID].collateral
        (event,) = self.apply_tx(tx)
        assert isinstance(event, Liquidated) and event.counterparty == cp
        maker_fee = st.accounts[FEE_POOL_ID].collateral - pool
        i = self.ids.index(tx.market_id)
        c = self.consts[i]
        lots = abs(event.delta) // c.step_size
        sign = 1 if event.delta > 0 else -1
        self.settle(acct)
        self.settle(cp)
        if tx.maker is None:
            self.given("k_lqb", acct, i, sign, lots, event.receipt)
            self.given("k_lcb", cp, i, -sign, lots, event.receipt)
            return
        ticks = self.ticks_of(i, tx.price)
        _check_small(lots, "liquidation size in lots")
        if sign * lots * ticks * c.quote_unit != -event.receipt:
            raise StarkProverError("internal error: liquidation receipt is not the maker's price")
        if event.fee:
            self.credit("k_lfi", INSURANCE_FUND_ID, event.fee)
        self.side("k_lqm", acct, i, sign, lots, ticks, event.fee)
        self.side("k_lcm", cp, i, -sign, lots, ticks, maker_fee)
        mi = self.rows.rows[-1][self.rows.i["mi"]]
        self.rows.margin(cp, self.ledgers[cp], bool(mi), (i, -sign))

    def deleverage(self, tx: Deleverage) -> None:
        self.ledger(tx.account_id)
        self.ledger(tx.offset_account_id)
        (event,) = self.apply_tx(tx)
        assert isinstance(event, Deleveraged)
        i = self.ids.index(tx.market_id)
        lots = abs(event.delta) // self.consts[i].step_size
        sign = 1 if event.delta > 0 else -1
        self.settle(tx.account_id)
        self.settle(tx.offset_account_id)
        self.given("k_lqb", tx.account_id, i, sign, lots, event.receipt)
        self.given("k_lcb", tx.offset_account_id, i, -sign, lots, event.receipt)

    def forced(self, tx: ForcedWithdrawal) -> None:
        st = self.state
        acct = st.account_id(tx.owner, tx.subaccount)
        if acct is not None and acct >= FIRST_USER_ID:
            self.ledger(acct)
        (event,) = self.apply_tx(tx)
        assert isinstance(event, WithdrawalEmitted)
        if acct is None or acct < FIRST_USER_ID:
            return  # served 0, no account touched
        self.settle(acct)
        if event.amount:
            self.rows.seq["xseq"] += 1
            self.credit("k_fw", acct, event.amount)
            self.rows.margin(acct, self.ledgers[acct], True, None)

    def apply(self, tx: Tx) -> None:
        st = self.state
        if isinstance(tx, OraclePriceTick):
            self.apply_tx(tx)
            self.ticks.append((TICK_ORACLE, tx.market_id, tx.price))
            i = self.ids.index(tx.market_id)
            self.rows.prices[i] = self.ticks_of(i, tx.price)
            self.rows.seq["fseq"] += 1
            self.rows.pad("k_tick")
            return
        if isinstance(tx, FundingTick):
            self.apply_tx(tx)
            for market_id, rate in tx.rates:
                self.ticks.append((TICK_FUNDING, market_id, rate))
            self.ticks.append((TICK_FUNDING, 0xFFFF, 0))  # end of one funding tick
            self.rows.indices = [st.funding_index[m] for m in self.ids]
            self.rows.seq["fseq"] += 1
            self.rows.pad("k_tick")
            return
        if isinstance(tx, Deposit):
            acct = self.known(tx.owner, tx.subaccount)
            self.apply_tx(tx)
            self.rows.seq["dseq"] += 1
            self.credit("k_dep", acct, tx.amount)
        elif isinstance(tx, Withdraw):
            acct = self.known(tx.owner, tx.subaccount)
            self.apply_tx(tx)
            self.settle(acct)
            self.rows.seq["wseq"] += 1
            self.credit("k_wd", acct, tx.amount)
            self.rows.margin(acct, self.ledgers[acct], True, None)
        elif isinstance(tx, Transfer):
            src = self.known(tx.owner, tx.subaccount)
            dst = self.known(tx.to_owner, tx.to_subaccount)
            self.apply_tx(tx)
            self.settle(src)
            self.credit("k_xo", src, tx.amount)
            self.credit("k_xi", dst, tx.amount)
            self.rows.margin(src, self.ledgers[src], True, None)
        elif isinstance(tx, Trade):
            maker = self.known(tx.maker.order.owner, tx.maker.order.subaccount)
            taker = self.known(tx.taker.order.owner, tx.taker.order.subaccount)
            self.ledger(FEE_POOL_ID)
            events = self.apply_tx(tx)
            fill = next(e for e in events if isinstance(e, Filled))
            i = self.ids.index(fill.market_id)
            c = self.consts[i]
            lots, ticks = fill.size // c.step_size, fill.price // c.tick_size
            _check_small(lots, "trade size in lots")
            _check_small(ticks, "trade price in ticks")
            self.settle(maker)
            self.settle(taker)
            sign = 1 if fill.maker_is_buy else -1
            self.side("k_mk", maker, i, sign, lots, ticks, fill.maker_fee)
            self.side("k_tk", taker, i, -sign, lots, ticks, fill.taker_fee)
            for acct, rows_kind, side_sign in ((maker, "k_mk", sign), (taker, "k_tk", -sign)):
                c_kind, c_mi = self.rows.i[rows_kind], self.rows.i["mi"]
                mi = next(r[c_mi] for r in reversed(self.rows.rows) if r[c_kind])
                self.rows.margin(acct, self.ledgers[acct], bool(mi), (i, side_sign))
        elif isinstance(tx, Liquidate):
            self.liquidate(tx)
        elif isinstance(tx, Deleverage):
            self.deleverage(tx)
        elif isinstance(tx, ForcedWithdrawal):
            self.forced(tx)
        else:
            raise StarkProverError(f"{type(tx).__name__} is not supported by batch AIR v1")
        for acct in st.last_touched:
            self.ledger(acct)  # bounds-check accounts new to this batch
            got = ledger_of(st.accounts[acct], self.consts)
            mine = self.fee_pool()[1] if acct == FEE_POOL_ID else self.ledgers[acct]
            if got != mine:
                raise StarkProverError(
                    f"internal error: rows for account {acct} disagree with the core"
                )
            _check_ledger(acct, got)


def build_witness(state: ExchangeState, txs: Sequence[Tx], apply: Apply | None = None) -> Witness:
    """Apply `txs` to `state` (mutated: pass a copy, or the state to move past the batch)
    and return the batch's trace. `apply` (default: the state's own, authenticated) lets
    a caller see every transaction applied, e.g. a BatchBuilder that cuts the batch after.

    Raises CoreError if the core refuses a transaction (the batch is invalid) and
    StarkProverError if the batch is valid but outside what the AIR can express.
    """
    b = _Builder(state, apply)
    for tx in txs:
        try:
            b.apply(tx)
        except CoreError as exc:
            raise StarkProverError(f"the core refuses the batch: {exc}") from exc
    b.credit_fees()
    if b.ledgers.get(FEE_POOL_ID) is not None:
        _check_ledger(FEE_POOL_ID, b.ledgers[FEE_POOL_ID])
    rows = b.rows.rows
    used = len(rows)
    n = max(MIN_TRACE, 1 << used.bit_length())  # at least one padding row at the end
    if n > MAX_TRACE:
        raise StarkProverError(f"{used} rows: beyond the batch AIR's 2^20-row bound")
    b.rows.pad_to(n)
    _accumulate_fees(b.cols, rows)
    trace = pack(b.cols, rows)
    kinds = {k: int(trace[b.cols[k]].sum()) for k in KINDS}
    return Witness(trace, dict(b.rows.last), b.ticks, used, kinds)


def _accumulate_fees(cols: Columns, rows: list[list[int]]) -> None:
    """The fee accumulator fq (4 limbs, the sum before the row) and its carries fc."""
    i = cols.index
    c_fq = [i[f"fq{k}"] for k in range(4)]
    c_fc = [i[f"fc{k}"] for k in range(3)]
    c_fee = [i["k_mk"], i["k_tk"], i["k_lcm"]]
    c_credit = i["k_fee"]
    c_v = cols.width + _SCRATCH.index("V")
    mask = LIMB - 1
    acc = [0, 0, 0, 0]
    for row in rows:
        for c, a in zip(c_fq, acc, strict=True):
            row[c] = a
        if row[c_fee[0]] or row[c_fee[1]] or row[c_fee[2]]:
            carry = 0
            for k in range(4):
                total = acc[k] + ((row[c_v] >> _LIMB_SHIFTS[k]) & mask) + carry
                carry = total >> LIMB_BITS
                acc[k] = total & mask
                if k < 3:
                    row[c_fc[k]] = carry
                elif carry:
                    raise StarkProverError("fees of the batch reach 2^44 quantums")
        elif row[c_credit]:
            if [(row[c_v] >> s) & mask for s in _LIMB_SHIFTS] != acc:
                raise StarkProverError("internal error: fee pool credit differs from the fees")
            acc = [0, 0, 0, 0]
    if acc != [0, 0, 0, 0]:
        raise StarkProverError("internal error: fees left uncredited")


def pack(cols: Columns, rows: list[list[int]]) -> np.ndarray:
    """Rows (with their scratch cells) -> (width, n) canonical field elements: the
    derived columns filled in, plus the lookup table."""
    n, width = len(rows), cols.width
    try:
        a = np.array(rows, dtype=np.int64).reshape(n, width + len(_SCRATCH))
    except OverflowError:  # a cell beyond int64: the same arithmetic on Python ints
        a = np.array(rows, dtype=object).reshape(n, width + len(_SCRATCH))
    _derive(cols, a)
    ints = a[:, :width] % P  # floor-mod: the canonical residue, negatives included
    out = np.ascontiguousarray(ints.T.astype(np.int64))
    out[cols["tab"]] = np.minimum(np.arange(n), TABLE_ROWS - 1)
    return out.astype(np.uint64)


def set_multiplicities(
    cols: Columns, trace: np.ndarray, lookups: np.ndarray, *, strict: bool = True
) -> None:
    """Fill `mult` and `mult2` (table values v and v + 1,024 at row v) from the lookup
    values of rows 0..n-2 ((k, n) array).

    strict=False counts only in-range values (soundness tests build cheating traces)."""
    n = trace.shape[1]
    vals = lookups[:, : n - 1].ravel()
    if not strict:
        vals = vals[vals < TABLE_SIZE]
    if vals.size and int(vals.max()) >= TABLE_SIZE:
        bad = int(np.argmax(lookups[:, : n - 1].max(axis=0) >= TABLE_SIZE))
        raise StarkProverError(f"a range-checked value is out of range at row {bad}")
    counts = np.bincount(vals.astype(np.int64), minlength=TABLE_SIZE)
    for name, part in (("mult", counts[:TABLE_ROWS]), ("mult2", counts[TABLE_ROWS:])):
        mult = np.zeros(n, dtype=np.uint64)
        mult[:TABLE_ROWS] = part
        trace[cols[name]] = mult
