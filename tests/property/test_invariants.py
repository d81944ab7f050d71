"""Invariants of the exchange over random transaction sequences.

Conservation of collateral to the quantum, zero-sum positions, atomicity of
rejected transactions, margin after every voluntary transaction, and
deterministic replay (also through the canonical encoding).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from perpnet.core import margin
from perpnet.core.accounts import FIRST_USER_ID, SYSTEM_OWNER
from perpnet.core.deleverage import ranking
from perpnet.core.encoding import decode_tx, encode_tx
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deleverage, Liquidate, Trade, Transfer, Tx, Withdraw
from perpnet.testkit import Desk, trader

TRADERS = tuple(trader(str(i)) for i in range(4))
BASE_PRICE = {0: 50_000 * USD, 1: 3_000 * USD}
MARKETS = tuple(BASE_PRICE)


@dataclass
class Run:
    desk: Desk
    state: ExchangeState
    log: list[Tx]


@dataclass(frozen=True)
class DepositStep:
    who: int
    dollars: int


@dataclass(frozen=True)
class PriceStep:
    market: int
    percent: int


@dataclass(frozen=True)
class TradeStep:
    maker: int
    taker: int
    market: int
    taker_buys: bool
    lots: int
    ticks: int


@dataclass(frozen=True)
class LeverStep:
    """A trade sized to take the taker to `leverage` times its value: the road to liquidation."""

    maker: int
    taker: int
    market: int
    taker_buys: bool
    leverage: int


@dataclass(frozen=True)
class WithdrawStep:
    who: int
    dollars: int


@dataclass(frozen=True)
class TransferStep:
    who: int
    to: int
    dollars: int


@dataclass(frozen=True)
class FundingStep:
    market: int
    rate_ppb: int


@dataclass(frozen=True)
class LiquidateStep:
    pass


Step = (
    DepositStep | PriceStep | TradeStep | WithdrawStep | TransferStep | FundingStep | LiquidateStep
)
who = st.integers(0, len(TRADERS) - 1)
markets = st.sampled_from(MARKETS)
trades = st.builds(
    TradeStep, who, who, markets, st.booleans(), st.integers(1, 8_000), st.integers(-20, 20)
)
steps = st.one_of(
    trades,
    st.builds(LeverStep, who, who, markets, st.booleans(), st.integers(2, 19)),
    trades,
    st.builds(DepositStep, who, st.integers(1, 20_000)),
    st.builds(PriceStep, markets, st.integers(50, 200)),
    st.builds(PriceStep, markets, st.integers(85, 115)),
    st.builds(
        TradeStep, who, who, markets, st.booleans(), st.integers(1, 8_000), st.integers(-20, 20)
    ),
    st.builds(WithdrawStep, who, st.integers(1, 20_000)),
    st.builds(TransferStep, who, who, st.integers(1, 5_000)),
    st.builds(FundingStep, markets, st.integers(-10_000_000, 10_000_000)),
    st.just(LiquidateStep()),
)


def nonce_of(state: ExchangeState, owner: bytes) -> int:
    account_id = state.account_id(owner, 0)
    return 0 if account_id is None else state.accounts[account_id].nonce


def build(run: Run, step: Step) -> list[Tx]:
    """Turn one drawn step into candidate transactions (some will be refused)."""
    desk, state = run.desk, run.state
    match step:
        case DepositStep(who, dollars):
            return [desk.deposit(TRADERS[who], dollars * USD)]
        case PriceStep(market, percent):
            return [desk.price(market, BASE_PRICE[market] * percent // 100)]
        case TradeStep(maker, taker, market_id, buys, lots, ticks):
            m = state.markets.get(market_id)
            ref = state.prices.get(market_id, BASE_PRICE[market_id])
            px = max(m.tick_size, ref - ref % m.tick_size + ticks * m.tick_size * 10)
            return [
                desk.cross(TRADERS[maker], TRADERS[taker], market_id, buys, lots * m.step_size, px)
            ]
        case LeverStep(maker, taker, market_id, buys, leverage):
            m = state.markets.get(market_id)
            px = state.prices[market_id] // m.tick_size * m.tick_size
            account_id = state.account_id(TRADERS[taker].address, 0)
            value = 0 if account_id is None else state.risk(state.accounts[account_id]).value
            lots = max(1, value * leverage * m.size_scale // px // m.step_size)
            return [
                desk.cross(TRADERS[maker], TRADERS[taker], market_id, buys, lots * m.step_size, px)
            ]
        case WithdrawStep(who, dollars):
            key = TRADERS[who]
            return [desk.withdraw(key, dollars * USD, nonce_of(state, key.address))]
        case TransferStep(who, to, dollars):
            key = TRADERS[who]
            nonce = nonce_of(state, key.address)
            return [desk.transfer(key, TRADERS[to].address, dollars * USD, nonce)]
        case FundingStep(market, rate):
            return [desk.funding((market, rate))]
    return liquidations(run)


def liquidations(run: Run) -> list[Tx]:
    """The margin engine's move: take over or deleverage every liquidatable account."""
    state, desk = run.state, run.desk
    out: list[Tx] = []
    for account in list(state.iter_accounts()):
        if account.account_id < FIRST_USER_ID or not account.positions:
            continue
        if not state.risk(account).liquidatable:
            continue
        for market_id, position in sorted(account.positions.items()):
            size = abs(position.size)
            out.append(Liquidate(desk.tick(), account.account_id, market_id, size, 0, None))
            queue = ranking(
                state.iter_accounts(),
                market_id,
                position.size < 0,
                state.markets,
                state.prices,
                state.funding_index,
            )
            for other in queue:
                held = abs(state.accounts[other].size(market_id))
                out.append(
                    Deleverage(desk.tick(), account.account_id, other, market_id, min(held, size))
                )
    return out


def snapshot(state: ExchangeState) -> tuple[bytes, dict[int, str]]:
    return state.root(), {i: repr(a) for i, a in state.accounts.items()}


def check_invariants(state: ExchangeState) -> None:
    held = sum(
        a.collateral - margin.pending_funding(a, state.funding_index, state.markets)
        for a in state.iter_accounts()
    )
    assert held == state.total_deposited - state.total_withdrawn
    for market_id in MARKETS:
        assert sum(a.size(market_id) for a in state.iter_accounts()) == 0


def start(fund: int) -> Run:
    """Prices for every market, the insurance fund's `fund` dollars, and funded traders."""
    desk = Desk()
    run = Run(desk, desk.state(), [])
    prelude: list[Tx] = [desk.price(m, px) for m, px in BASE_PRICE.items()]
    if fund:
        prelude.append(desk.deposit(SYSTEM_OWNER, fund * USD))
    prelude += [desk.deposit(key, 5_000 * USD) for key in TRADERS]
    for tx in prelude:
        run.state.apply(tx)
        run.log.append(tx)
    return run


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=5, max_size=40), st.integers(0, 3_000))
def test_random_sequences_keep_every_invariant(drawn: list[Step], fund: int) -> None:
    run = start(fund)
    desk = run.desk
    for step in drawn:
        for tx in build(run, step):
            before = snapshot(run.state)
            try:
                run.state.apply(tx)
            except CoreError as exc:
                assert snapshot(run.state) == before, "a refused transaction changed the state"
                event(f"refused {type(tx).__name__}: {exc.code.value}")
                continue
            event(f"applied {type(tx).__name__}")
            run.log.append(tx)
            check_invariants(run.state)
            if isinstance(tx, Trade | Withdraw | Transfer):
                for account in run.state.iter_accounts():
                    if account.account_id >= FIRST_USER_ID and account.positions:
                        assert not run.state.risk(account).liquidatable or tx_untouched(
                            tx, account.owner
                        )
    replay = ExchangeState(desk.config)
    for tx in run.log:
        replay.apply(decode_tx(encode_tx(tx), desk.config.domain))
    assert replay.root() == run.state.root()


def tx_untouched(tx: Trade | Withdraw | Transfer, owner: bytes) -> bool:
    """Accounts a voluntary transaction did not touch may already have been under water."""
    if isinstance(tx, Trade):
        return owner not in (tx.maker.order.owner, tx.taker.order.owner)
    return owner != tx.owner


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(MARKETS),
    st.booleans(),
    st.integers(5, 19),
    st.one_of(st.integers(60, 140), st.integers(90, 110)),
    st.integers(0, 2_000),
)
def test_liquidation_resolves_every_underwater_account(
    market_id: int, long: bool, leverage: int, move_percent: int, fund: int
) -> None:
    """After an oracle move, takeovers and deleveraging leave no account liquidatable."""
    desk = Desk()
    run = Run(desk, desk.state(), [])
    setup: list[Tx] = [desk.price(m, px) for m, px in BASE_PRICE.items()]
    setup += [desk.deposit(key, 5_000 * USD) for key in TRADERS]
    if fund:
        setup.append(desk.deposit(SYSTEM_OWNER, fund * USD))
    for tx in setup:
        run.state.apply(tx)
    for pair, lev in (((0, 1), leverage), ((2, 3), max(2, leverage // 3))):
        for tx in build(run, LeverStep(pair[0], pair[1], market_id, long, lev)):
            run.state.apply(tx)
    moved = BASE_PRICE[market_id] * move_percent // 100
    run.state.apply(desk.price(market_id, moved))
    for _ in range(4):
        for tx in liquidations(run):
            before = snapshot(run.state)
            try:
                run.state.apply(tx)
            except CoreError as exc:
                assert snapshot(run.state) == before
                event(f"refused {type(tx).__name__}: {exc.code.value}")
            else:
                event(f"applied {type(tx).__name__}")
            check_invariants(run.state)
    for account in run.state.iter_accounts():
        if account.account_id >= FIRST_USER_ID:
            assert not run.state.risk(account).liquidatable


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=5, max_size=30), st.integers(0, 30))
def test_a_deep_copy_of_the_state_is_independent_and_replays_alike(
    drawn: list[Step], fork_at: int
) -> None:
    """The prover proves from a deep copy of its replica (with hand-written copies of
    accounts, orders and trees): the copy must not move when the original does, and
    must reach the same state on the same transactions."""
    run = start(0)
    fork: ExchangeState | None = None
    forked: tuple[bytes, dict[int, str]] | None = None
    rest: list[Tx] = []
    for i, step in enumerate(drawn):
        if i == min(fork_at, len(drawn) - 1):
            fork = copy.deepcopy(run.state)
            forked = snapshot(fork)
            for i, account in run.state.accounts.items():  # no mutable object shared
                twin = fork.accounts[i]
                assert twin is not account and twin.positions is not account.positions
                assert not {id(p) for p in twin.positions.values()} & {
                    id(p) for p in account.positions.values()
                }
            assert all(fork.order_fills[h] is not f for h, f in run.state.order_fills.items())
        for tx in build(run, step):
            try:
                run.state.apply(tx)
            except CoreError:
                continue
            if fork is not None:
                rest.append(tx)
    assert fork is not None and forked is not None
    final = snapshot(run.state)  # the original's trees rehashed first (they are lazy)
    assert snapshot(fork) == forked
    for tx in rest:
        fork.apply(tx)
    assert snapshot(fork) == final
    assert fork.order_fills == run.state.order_fills
