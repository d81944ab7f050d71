"""Random op sequences: the book never crosses, sizes are conserved, and a restored
snapshot behaves exactly like the engine it was taken from."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_matching_kit import FAR, MARKETS, addr, order

from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.matching import Cancel, CancelReason, MatchingEngine, PlaceResult
from perpnet.core.orders import OrderKind, SelfTrade, SignedOrder, TimeInForce

TRADERS = ("p", "q", "r")
KINDS = (
    OrderKind.LIMIT,
    OrderKind.LIMIT,
    OrderKind.LIMIT,
    OrderKind.MARKET,
    OrderKind.STOP_MARKET,
    OrderKind.TAKE_PROFIT_LIMIT,
)


@cache
def signed(
    nonce: int,
    trader: int,
    buy: bool,
    lots: int,
    price: int,
    kind: OrderKind,
    tif: TimeInForce,
    stp: SelfTrade,
    reduce_only: bool,
    expiry_ms: int,
) -> SignedOrder:
    """Cached across examples: hypothesis replays many of the same orders."""
    if kind in (OrderKind.MARKET, OrderKind.STOP_MARKET) and tif not in (
        TimeInForce.IOC,
        TimeInForce.FOK,
    ):
        tif = TimeInForce.IOC
    if reduce_only and tif not in (TimeInForce.IOC, TimeInForce.FOK):
        reduce_only = False
    conditional = kind not in (OrderKind.LIMIT, OrderKind.MARKET)
    return order(
        TRADERS[trader],
        "buy" if buy else "sell",
        lots,
        price,
        kind=kind,
        tif=tif,
        trigger=price + (1 if buy else -1) if conditional else 0,
        reduce_only=reduce_only,
        stp=stp,
        expiry_ms=expiry_ms,
        nonce=nonce,
    )


GTT, IOC, FOK, POST = TimeInForce  # hypothesis samples in proportion to repeats below
places = st.tuples(
    st.just("place"),
    st.integers(0, 2),
    st.booleans(),
    st.integers(1, 4),
    st.integers(98, 102),
    st.sampled_from(KINDS),
    st.sampled_from((GTT, GTT, GTT, IOC, FOK, POST)),
    st.sampled_from(list(SelfTrade)),
    st.sampled_from((False,) * 5 + (True,)),  # reduce-only
    st.sampled_from((FAR, FAR, FAR, 50, 200)),  # expiry_ms
)
cancels = st.tuples(st.just("cancel"), st.integers(0, 1_000))
amends = st.tuples(st.just("amend"), st.integers(0, 1_000), st.integers(1, 4), st.integers(98, 102))
clock = st.tuples(st.just("expire"), st.integers(1, 80))
ticks = st.tuples(st.just("oracle"), st.integers(96, 104))
WEIGHTED = (places,) * 15 + (cancels,) * 3 + (amends,) * 3 + (clock,) * 2 + (ticks,) * 2
ops_strategy = st.lists(
    st.integers(0, len(WEIGHTED) - 1).flatmap(WEIGHTED.__getitem__), min_size=20, max_size=60
)


Op = tuple[Any, ...]


@dataclass
class Ledger:
    """What happened to every accepted order, from the engine's own reports."""

    placed: dict[bytes, int] = field(default_factory=dict)
    filled: Counter[bytes] = field(default_factory=Counter)
    cancelled: Counter[bytes] = field(default_factory=Counter)
    positions: Counter[bytes] = field(default_factory=Counter)

    def record(self, outcome: object, accepted: SignedOrder | None) -> None:
        if accepted is not None and not isinstance(outcome, ErrorCode):
            self.placed[accepted.hash] = accepted.order.size
        for item in outcome if isinstance(outcome, list) else [outcome]:
            if isinstance(item, PlaceResult):
                for fill in item.fills:
                    self.filled[fill.maker.hash] += fill.size
                    self.filled[fill.taker.hash] += fill.size
                    bought = fill.size if fill.taker.order.is_buy else -fill.size
                    self.positions[fill.taker.order.owner] += bought
                    self.positions[fill.maker.order.owner] -= bought
                item_cancels = item.cancelled
            else:
                item_cancels = [item] if isinstance(item, Cancel) else []
            for cancel in item_cancels:
                self.cancelled[cancel.order.hash] += cancel.size


@dataclass
class Driver:
    """Feeds ops to one engine; a restored twin gets its own driver."""

    engine: MatchingEngine
    now: int = 0
    orders: list[SignedOrder] = field(default_factory=list)  # accepted: cancel/amend targets

    def twin(self) -> Driver:
        restored = MatchingEngine.restore(self.engine.snapshot(), MARKETS)
        return Driver(restored, self.now, list(self.orders))

    def run(self, op: Op, step: int, ledger: Ledger) -> tuple[object, SignedOrder | None]:
        """One op; returns its outcome (an ErrorCode when refused) and the order it submitted."""
        new = self._new_order(op, step)
        try:
            outcome = self._run(op, new, ledger)
        except CoreError as err:
            return err.code, new
        if new is not None:
            self.orders.append(new)
        return outcome, new

    def _new_order(self, op: Op, step: int) -> SignedOrder | None:
        if op[0] == "place":
            return signed(step, *op[1:])
        if op[0] == "amend" and self.orders:
            o = self.orders[op[1] % len(self.orders)].order
            trader = next(i for i, t in enumerate(TRADERS) if addr(t) == o.owner)
            lots, price = op[2], op[3]
            return signed(
                step, trader, o.is_buy, lots, price, o.kind, o.tif, o.self_trade, False, FAR
            )
        return None

    def _run(self, op: Op, new: SignedOrder | None, ledger: Ledger) -> object:
        engine, name, now = self.engine, op[0], self.now
        position = ledger.positions.__getitem__
        if name == "place" and new is not None:
            return engine.place(new, now, position=position(new.order.owner))
        if name in ("cancel", "amend") and self.orders:
            old = self.orders[op[1] % len(self.orders)]
            if new is not None:
                return engine.amend(old.hash, new, now)
            return engine.cancel(old.hash, old.order.owner, now)
        if name == "expire":
            self.now = now = now + op[1]
            live = {o.hash: r.remaining for o in self.orders if (r := engine.resting(o.hash))}
            return [Cancel(o, live[o.hash], CancelReason.EXPIRED) for o in engine.expire(now)]
        if name == "oracle":
            return engine.on_oracle_price(
                0, op[1] * USD, now, position_of=lambda owner, _: position(owner)
            )
        return None


def check_book(engine: MatchingEngine) -> None:
    """Uncrossed, and every level's total is the sum of what its orders have left."""
    bid, ask = engine.best_bid(0), engine.best_ask(0)
    assert bid is None or ask is None or bid < ask, (bid, ask)
    levels: Counter[tuple[bool, int]] = Counter()
    for live in engine.snapshot().orders:
        if not live.pending and live.order.order.market_id == 0:
            levels[live.order.order.is_buy, live.order.order.price] += live.remaining
    bids, asks = engine.depth(0, 1_000)
    assert levels == Counter({(True, p): s for p, s in bids} | {(False, p): s for p, s in asks})
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy, split=st.integers(0, 40))
def test_random_sequences_keep_invariants_and_restore_exactly(ops: list[Op], split: int) -> None:
    driver = Driver(MatchingEngine(MARKETS))
    twin: Driver | None = None
    ledger = Ledger()
    for step, op in enumerate(ops):
        if step == split:
            twin = driver.twin()
        outcome, new = driver.run(op, step, ledger)
        if twin is not None:
            assert twin.run(op, step, ledger) == (outcome, new)
        ledger.record(outcome, new)
        check_book(driver.engine)
    for order_hash, size in ledger.placed.items():
        live = driver.engine.resting(order_hash)
        remaining = 0 if live is None else live.remaining
        assert ledger.filled[order_hash] + ledger.cancelled[order_hash] + remaining == size
    if twin is not None:
        assert twin.engine.snapshot() == driver.engine.snapshot()
