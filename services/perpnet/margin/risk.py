"""The margin engine's decisions, pure functions of an `ExchangeState` replica.

The service (perpnet.margin.service) feeds the replica from the sequencer's
log and submits what these functions return; the sequencer re-checks every
transaction, so a decision taken on a replica a few transactions behind is
at worst refused, never wrongly applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from perpnet.core import margin
from perpnet.core.accounts import INSURANCE_FUND_ID, Account
from perpnet.core.deleverage import ranking
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.funding import PremiumSampler
from perpnet.core.markets import MarketSet
from perpnet.core.orders import Order
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deleverage, FundingTick, Liquidate


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """A pre-trade verdict: ok, or a core ErrorCode and why."""

    ok: bool
    reason: str = ""
    message: str = ""
    position: int = 0
    risk: margin.Risk | None = None
    account_id: int | None = None


def check_order(state: ExchangeState, order: Order, open_orders: Iterable[Order]) -> OrderCheck:
    """Would the account meet initial margin if this order and all its open orders filled?

    Open orders count with their remaining size at their limit price, on the
    worse side of each market (core.margin.worst_case_initial). Reduce-only
    orders cannot add risk and always pass.
    """
    account_id = state.account_id(order.owner, order.subaccount)
    if account_id is None:
        code = ErrorCode.INSUFFICIENT_MARGIN
        return OrderCheck(False, code, f"{code}: account has no collateral")
    account = state.account(account_id)
    position = account.size(order.market_id)
    if order.reduce_only:
        return OrderCheck(True, position=position, account_id=account_id)
    try:
        worst = margin.worst_case_initial(
            account, [order, *open_orders], state.markets, state.prices, state.funding_index
        )
    except CoreError as exc:
        return OrderCheck(False, exc.code, str(exc), position, account_id=account_id)
    if worst.value < worst.initial:
        code = ErrorCode.INSUFFICIENT_MARGIN
        message = (
            f"{code}: account {account_id} would be worth {worst.value}"
            f" against an initial margin of {worst.initial} if its orders filled"
        )
        return OrderCheck(False, code, message, position, worst, account_id)
    return OrderCheck(True, position=position, risk=worst, account_id=account_id)


def account_risk(state: ExchangeState, account: Account) -> margin.Risk | None:
    """The account's risk, or None while a market it holds has no oracle price."""
    try:
        return state.risk(account)
    except CoreError:
        return None


def liquidatable(state: ExchangeState, limit: int) -> list[int]:
    """Up to `limit` user accounts below maintenance margin, lowest id first."""
    found: list[int] = []
    for account in state.iter_accounts():
        if account.is_system or not account.positions:
            continue
        risk = account_risk(state, account)
        if risk is not None and risk.liquidatable:
            found.append(account.account_id)
            if len(found) >= limit:
                break
    return found


def takeovers(state: ExchangeState, account_id: int, timestamp_ms: int) -> list[Liquidate]:
    """Insurance-fund takeovers of each of the account's positions, largest market id last."""
    account = state.account(account_id)
    return [
        Liquidate(timestamp_ms, account_id, market_id, abs(position.size), 0, None)
        for market_id, position in sorted(account.positions.items())
    ]


def deleverage(
    state: ExchangeState, account_id: int, market_id: int, timestamp_ms: int
) -> Deleverage | None:
    """Close the bankrupt position against the head of the deleveraging queue (core ranking)."""
    held = state.account(account_id).size(market_id)
    if held == 0:
        return None
    closing_long = held < 0  # closing a short buys: the offsets are longs
    queue = ranking(
        state.iter_accounts(),
        market_id,
        closing_long,
        state.markets,
        state.prices,
        state.funding_index,
    )
    if not queue:
        return None
    offset = queue[0]
    size = min(abs(held), abs(state.account(offset).size(market_id)))
    return Deleverage(timestamp_ms, account_id, offset, market_id, size)


def fund_deficit(state: ExchangeState, timestamp_ms: int) -> list[Deleverage]:
    """If the insurance fund is worth less than zero, deleverage its positions."""
    fund = state.account(INSURANCE_FUND_ID)
    risk = account_risk(state, fund)
    if risk is None or risk.value >= 0:
        return []
    markets = sorted(fund.positions)
    actions = (deleverage(state, INSURANCE_FUND_ID, m, timestamp_ms) for m in markets)
    return [tx for tx in actions if tx is not None]


@dataclass(slots=True)
class FundingDesk:
    """Premium samples per market between funding ticks, and the tick that settles them."""

    markets: MarketSet
    samplers: dict[int, PremiumSampler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.samplers = {m.market_id: PremiumSampler(m) for m in self.markets.markets}

    def sample(
        self, market_id: int, impact_bid: int | None, impact_ask: int | None, index: int
    ) -> int:
        return self.samplers[market_id].sample(impact_bid, impact_ask, index)

    def due(self, state: ExchangeState, now_ms: int) -> bool:
        last = state.last_funding_ms
        return last < 0 or now_ms >= last + state.config.min_funding_interval_ms

    def tick(self, state: ExchangeState, now_ms: int) -> FundingTick | None:
        """The funding tick for the markets with a fresh oracle price, or None if not due.

        Each rate is the interval's mean premium, clamped to what the core
        allows for the time since the last tick (a share of the per-period maximum).
        """
        if not self.due(state, now_ms):
            return None
        config = state.config
        period = config.funding_period_ms
        last = state.last_funding_ms
        elapsed = period if last < 0 else now_ms - last
        rates: list[tuple[int, int]] = []
        for market_id, sampler in sorted(self.samplers.items()):
            priced = state.price_times.get(market_id)
            if priced is None or now_ms - priced > config.max_price_age_ms:
                sampler.samples.clear()
                continue
            limit = sampler.market.max_funding_rate_ppb * min(elapsed, period) // period
            rate = sampler.close_interval()
            rates.append((market_id, max(-limit, min(limit, rate))))
        return FundingTick(now_ms, tuple(rates)) if rates else None
