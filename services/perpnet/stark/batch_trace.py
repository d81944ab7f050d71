"""The batch witness: replay a batch with the core state machine and lay out its rows.

The exchange rules are never re-implemented here: every transaction is applied
with `ExchangeState.apply(tx, authenticated=True)`, and the rows only decompose
what the core did (funding settlement per position, then the transaction's own
effect) into the steps the AIR constrains. The decomposition is checked against
the core's resulting accounts, so a mismatch is an error, never a silent proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perpnet.core.accounts import FEE_POOL_ID, FIRST_USER_ID, INSURANCE_FUND_ID, Account
from perpnet.core.errors import CoreError
from perpnet.core.events import Deleveraged, Filled, Liquidated, WithdrawalEmitted
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
    OFF_SMALL,
    SMALL_BITS,
    TABLE_SIZE,
    V_BITS,
    Columns,
    MarketConstants,
    c_limbs,
    market_constants,
    small_limbs,
    v_limbs,
    z_limbs,
)
from perpnet.stark.errors import StarkProverError
from perpnet.stark.field import P

TICK_ORACLE = 1
TICK_FUNDING = 2


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
    """Accumulates rows as dicts of integers, then packs them into field columns."""

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
        self.rows: list[dict[str, int]] = []
        self.last: dict[int, int] = {}
        self.indices = list(indices)
        self.prices = list(prices)
        self.seq = {"dseq": 0, "wseq": 0, "fseq": 0, "xseq": 0}
        self.pad()

    def _base(self) -> dict[str, int]:
        t = len(self.rows) + 1
        row: dict[str, int] = {"t": t, **self.seq}
        for i, v in enumerate(self.indices):
            row[f"I{i}"] = v
        for i, v in enumerate(self.prices):
            row[f"T{i}"] = v
        return row

    def pad(self, kind: str | None = None) -> None:
        """A memory no-op: reads and writes the same tuple at version t (account 0, zeros)."""
        row = self._base()
        if kind is not None:
            row[kind] = 1
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
        for t in range(len(self.rows) + 1, n + 1):
            row = dict(template)
            row["t"] = t
            self.rows.append(row)

    def _ledger(self, row: dict[str, int], before: Ledger, collateral_after: int) -> None:
        for i, limb in enumerate(c_limbs(before.collateral)):
            row[f"co{i}"] = limb
        for i, limb in enumerate(c_limbs(collateral_after)):
            row[f"cn{i}"] = limb
        row["nonce"] = before.nonce
        for i in range(self.m):
            row[f"lo{i}"] = before.lots[i]
            row[f"fo{i}"] = before.funding[i]
            row[f"fn{i}"] = before.funding[i]

    def _fill(self, row: dict[str, int]) -> None:
        """Defaults for the product, amount and carry columns (X = Y = Z = V = 0)."""
        _pending(row)
        row.setdefault("a0", 0)
        row.setdefault("a1", OFF_SMALL >> LIMB_BITS)
        for name, value in zip(("x0", "x1"), small_limbs(row.pop("_X", 0)), strict=True):
            row.setdefault(name, value)
        for name, value in zip(("y0", "y1"), small_limbs(row.pop("_Y", 0)), strict=True):
            row.setdefault(name, value)
        x = row["x0"] + LIMB * row["x1"] - OFF_SMALL
        y = row["y0"] + LIMB * row["y1"] - OFF_SMALL
        z = x * y
        zl = z_limbs(z)
        for i, limb in enumerate(zl):
            row[f"z{i}"] = limb
        row["wp"] = _exact_div(row["x0"] * row["y0"] - zl[0], "product carry")
        v = row.pop("_V", 0)
        vl = v_limbs(v)
        for i, limb in enumerate(vl):
            row[f"v{i}"] = limb
        kind = {k: row.get(k, 0) for k in KINDS}
        tr = kind["k_mk"] + kind["k_tk"] + kind["k_lqm"] + kind["k_lcm"]
        cz = kind["k_set"] + (tr - kind["k_mg"]) * row.get("sq", 0)
        cv = kind["k_fee"] + kind["k_dep"] + kind["k_xi"] + kind["k_lfi"]
        cv += (kind["k_lqb"] - kind["k_lcb"]) * row.get("rho", 0)
        cv -= tr + kind["k_wd"] + kind["k_xo"] + kind["k_fw"] + kind["k_mg"]
        w = 0
        for i in range(2):
            w = _exact_div(
                row[f"cn{i}"] - row[f"co{i}"] + cz * zl[i] - cv * vl[i] + w, "collateral carry"
            )
            row[f"wc{i}"] = w
        fa, fb, rem = row.get("fa", 0), row.get("fb", 0), row.get("rem", 0)
        w = 0
        for i in range(3):
            w = _exact_div(fb * vl[i] - fa * zl[i] - (rem if i == 0 else 0) + w, "fee carry")
            row[f"wf{i}"] = w

    def mem(
        self,
        kind: str,
        acct: int,
        before: Ledger,
        after: Ledger,
        *,
        market: int | None = None,
        **extra: int,
    ) -> None:
        row = self._base()
        row[kind] = 1
        row["acct"] = acct
        rv = self.last.get(acct, 0)
        r = row["t"] - 1 - rv
        row["r0"], row["r1"] = r & (LIMB - 1), r >> LIMB_BITS
        self.last[acct] = row["t"]
        self._ledger(row, before, after.collateral)
        for i in range(self.m):
            row[f"fn{i}"] = after.funding[i]
        if market is not None:
            row[f"e{market}"] = 1
        row.update(extra)
        if kind in ("k_set", "k_mk", "k_tk", "k_lqm", "k_lcm", "k_lqb", "k_lcb"):
            assert market is not None
            lots = after.lots[market]
            row["a0"], row["a1"] = small_limbs(lots)
            row["nz"] = 1 if lots else 0
            row["G"] = self.indices[market] if lots else 0
        self._fill(row)
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
            before = led.copy()
            before.collateral = acc
            acc = acc + (sign * c.quote_unit * z if tier == 0 else 0) - req
            if not -(1 << C_BITS) < acc < 1 << C_BITS:
                raise StarkProverError(f"account {acct}: margin sum beyond the AIR's ±2^49")
            row = self._base()
            row["k_mg"] = 1
            row["acct"] = acct
            if j == 0:
                rv = self.last.get(acct, 0)
                r = row["t"] - 1 - rv
                row["r0"], row["r1"] = r & (LIMB - 1), r >> LIMB_BITS
                self.last[acct] = row["t"]
                row["mst"] = 1
            self._ledger(row, before, acc)
            row[f"e{i}"] = 1
            row["a0"], row["a1"] = small_limbs(led.lots[i])
            row["mi"] = int(initial)
            row["trd"] = int(j == 0 and traded is not None and not initial)
            row["q"] = int(j == len(rows) - 1)
            for k in range(self.m):
                row[f"cov{k}"] = cov[k]
            slack = 0 if hx else width - x
            row.update(t2=int(tier == 1), t3=int(tier == 2), hx=hx, lb=width)
            row.update(s0=slack & (LIMB - 1), s1=slack >> LIMB_BITS)
            sq = sign * c.quote_unit if tier == 0 else 0
            row.update(sig=sign, sq=sq, fa=fa, fb=fb, rem=fb * req - fa * z)
            row.update(_X=x, _Y=ticks, _V=req)
            self._fill(row)
            self.rows.append(row)


def _pending(row: dict[str, int]) -> None:
    """mi, trd, pr, pw as the AIR's pending-check constraints define them."""
    mi = row.setdefault("mi", 1)
    trd = row.get("trd", 0)
    sig = row.get("sig", 0)
    sig = -1 if sig in (-1, P - 1) else sig
    market = next((int(k[1:]) for k, v in row.items() if k[0] == "e" and k[1:].isdigit() and v), 0)
    row["pr"] = mi + (1 - mi) * (2 + trd * (1 + 2 * market + (1 - sig) // 2))
    if row.get("k_mk") or row.get("k_tk") or row.get("k_lcm"):
        row["pw"] = mi + (1 - mi) * (3 + 2 * market + (1 + sig) // 2)
    elif row.get("k_wd") or row.get("k_xo") or row.get("k_fw"):
        row["pw"] = 1
    else:
        row["pw"] = 0


def _exact_div(value: int, what: str) -> int:
    if value % LIMB:
        raise StarkProverError(f"internal error: {what} is not exact")
    return value // LIMB


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


class _Builder:
    def __init__(self, state: ExchangeState) -> None:
        self.state = state
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
            self.rows.mem("k_set", acct, led, after, market=i, _X=lots, _Y=gap)
            self.ledgers[acct] = led = after

    def credit(self, kind: str, acct: int, amount: int, **extra: int) -> None:
        led = self.ledger(acct)
        after = led.copy()
        sign = 1 if kind in ("k_fee", "k_dep", "k_xi", "k_lfi") else -1
        after.collateral += sign * amount
        if kind in ("k_wd", "k_xo"):
            after.nonce += 1
        _check_amount(amount, "amount")
        self.rows.mem(kind, acct, led, after, _V=amount, **extra)
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
            kind, acct, led, after, market=i, _X=lots, _Y=ticks, _V=fee, fb=fb, rem=rem, **extra
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
        self.rows.mem(kind, acct, led, after, market=i, _X=lots, _Y=0, _V=abs(receipt), **extra)
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
        (event,) = st.apply(tx, authenticated=True)
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
        row = self.rows.rows[-1]
        self.rows.margin(cp, self.ledgers[cp], bool(row["mi"]), (i, -sign))

    def deleverage(self, tx: Deleverage) -> None:
        st = self.state
        self.ledger(tx.account_id)
        self.ledger(tx.offset_account_id)
        (event,) = st.apply(tx, authenticated=True)
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
        (event,) = st.apply(tx, authenticated=True)
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
            st.apply(tx, authenticated=True)
            self.ticks.append((TICK_ORACLE, tx.market_id, tx.price))
            i = self.ids.index(tx.market_id)
            self.rows.prices[i] = self.ticks_of(i, tx.price)
            self.rows.seq["fseq"] += 1
            self.rows.pad("k_tick")
            return
        if isinstance(tx, FundingTick):
            st.apply(tx, authenticated=True)
            for market_id, rate in tx.rates:
                self.ticks.append((TICK_FUNDING, market_id, rate))
            self.ticks.append((TICK_FUNDING, 0xFFFF, 0))  # end of one funding tick
            self.rows.indices = [st.funding_index[m] for m in self.ids]
            self.rows.seq["fseq"] += 1
            self.rows.pad("k_tick")
            return
        if isinstance(tx, Deposit):
            acct = self.known(tx.owner, tx.subaccount)
            st.apply(tx, authenticated=True)
            self.rows.seq["dseq"] += 1
            self.credit("k_dep", acct, tx.amount)
        elif isinstance(tx, Withdraw):
            acct = self.known(tx.owner, tx.subaccount)
            st.apply(tx, authenticated=True)
            self.settle(acct)
            self.rows.seq["wseq"] += 1
            self.credit("k_wd", acct, tx.amount)
            self.rows.margin(acct, self.ledgers[acct], True, None)
        elif isinstance(tx, Transfer):
            src = self.known(tx.owner, tx.subaccount)
            dst = self.known(tx.to_owner, tx.to_subaccount)
            st.apply(tx, authenticated=True)
            self.settle(src)
            self.credit("k_xo", src, tx.amount)
            self.credit("k_xi", dst, tx.amount)
            self.rows.margin(src, self.ledgers[src], True, None)
        elif isinstance(tx, Trade):
            maker = self.known(tx.maker.order.owner, tx.maker.order.subaccount)
            taker = self.known(tx.taker.order.owner, tx.taker.order.subaccount)
            self.ledger(FEE_POOL_ID)
            events = st.apply(tx, authenticated=True)
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
                row = next(r for r in reversed(self.rows.rows) if r.get(rows_kind))
                self.rows.margin(acct, self.ledgers[acct], bool(row["mi"]), (i, side_sign))
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


def build_witness(state: ExchangeState, txs: Sequence[Tx]) -> Witness:
    """Apply `txs` to `state` (mutated: pass a copy) and return the batch's trace.

    Raises CoreError if the core refuses a transaction (the batch is invalid) and
    StarkProverError if the batch is valid but outside what the AIR can express.
    """
    b = _Builder(state)
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
    _accumulate_fees(rows)
    trace = pack(b.cols, rows)
    kinds = {k: int(trace[b.cols[k]].sum()) for k in KINDS}
    return Witness(trace, dict(b.rows.last), b.ticks, used, kinds)


def _accumulate_fees(rows: list[dict[str, int]]) -> None:
    """The fee accumulator fq (4 limbs, the sum before the row) and its carries fc."""
    acc = [0, 0, 0, 0]
    for row in rows:
        for i in range(4):
            row[f"fq{i}"] = acc[i]
        v = [row.get(f"v{i}", 0) for i in range(4)]
        if row.get("k_mk") or row.get("k_tk") or row.get("k_lcm"):
            carry = 0
            for i in range(4):
                total = acc[i] + v[i] + carry
                carry = total >> LIMB_BITS
                acc[i] = total & (LIMB - 1)
                if i < 3:
                    row[f"fc{i}"] = carry
                elif carry:
                    raise StarkProverError("fees of the batch reach 2^44 quantums")
        elif row.get("k_fee"):
            if v != acc:
                raise StarkProverError("internal error: fee pool credit differs from the fees")
            acc = [0, 0, 0, 0]
    if acc != [0, 0, 0, 0]:
        raise StarkProverError("internal error: fees left uncredited")


def pack(cols: Columns, rows: list[dict[str, int]]) -> np.ndarray:
    """Rows of integers -> (width, n) canonical field elements, plus the lookup table."""
    n = len(rows)
    out = np.zeros((cols.width, n), dtype=np.int64)
    ints: dict[str, list[int]] = {name: [0] * n for name in cols.names}
    for r, row in enumerate(rows):
        for name, value in row.items():
            if name == "e_market":
                ints[f"e{value}"][r] = 1
            else:
                ints[name][r] = value
    for name, values in ints.items():
        try:
            column = np.array(values, dtype=np.int64)
        except OverflowError:  # beyond int64: reduce in Python first
            column = np.array([v % P for v in values], dtype=np.int64)
        out[cols[name]] = column % P
    tab = np.minimum(np.arange(n), TABLE_SIZE - 1)
    out[cols["tab"]] = tab
    return out.astype(np.uint64)


def set_multiplicities(
    cols: Columns, trace: np.ndarray, lookups: np.ndarray, *, strict: bool = True
) -> None:
    """Fill `mult` from the lookup values of rows 0..n-2 ((k, n) array).

    strict=False counts only in-range values (soundness tests build cheating traces)."""
    n = trace.shape[1]
    vals = lookups[:, : n - 1].ravel()
    if not strict:
        vals = vals[vals < TABLE_SIZE]
    if vals.size and int(vals.max()) >= TABLE_SIZE:
        bad = int(np.argmax(lookups[:, : n - 1].max(axis=0) >= TABLE_SIZE))
        raise StarkProverError(f"a range-checked value is out of range at row {bad}")
    counts = np.bincount(vals.astype(np.int64), minlength=TABLE_SIZE)
    mult = np.zeros(n, dtype=np.uint64)
    mult[:TABLE_SIZE] = counts
    trace[cols["mult"]] = mult
