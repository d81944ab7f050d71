"""Helpers shared by the matching-engine tests (no tests here).

Prices are written in whole dollars and sizes in lots (steps) of BTC-USD, so
the scenarios read like a trading screen; keys are cached because signing
costs about 100 µs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest

from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD, MarketSet
from perpnet.core.matching import CancelReason, MatchingEngine, PlaceResult
from perpnet.core.orders import Order, OrderKind, SelfTrade, SignedOrder, TimeInForce
from perpnet.core.typed_data import Domain

DOMAIN = Domain()
MARKETS = MarketSet()
BTC = MARKETS.get(0)
LOT = BTC.step_size
FAR = 2**63

_nonces = itertools.count(1)


@cache
def key(name: str) -> PrivateKey:
    return PrivateKey.from_seed(f"matching-{name}".encode())


def addr(name: str) -> bytes:
    return key(name).address


def order(
    name: str,
    side: str,
    lots: int,
    price: int,
    *,
    kind: OrderKind = OrderKind.LIMIT,
    tif: TimeInForce = TimeInForce.GTT,
    trigger: int = 0,
    reduce_only: bool = False,
    stp: SelfTrade = SelfTrade.CANCEL_MAKER,
    expiry_ms: int = FAR,
    subaccount: int = 0,
    market_id: int = 0,
    nonce: int | None = None,
) -> SignedOrder:
    """A signed order: `side` is "buy" or "sell", `price`/`trigger` in whole dollars."""
    assert side in ("buy", "sell")
    raw = Order(
        owner=addr(name),
        subaccount=subaccount,
        market_id=market_id,
        is_buy=side == "buy",
        size=lots * LOT,
        price=price * USD,
        kind=kind,
        tif=tif,
        trigger_price=trigger * USD,
        reduce_only=reduce_only,
        self_trade=stp,
        nonce=next(_nonces) if nonce is None else nonce,
        expiry_ms=expiry_ms,
    )
    return SignedOrder.create(raw, key(name), DOMAIN)


def ioc(name: str, side: str, lots: int, price: int, **kw: Any) -> SignedOrder:
    return order(name, side, lots, price, tif=TimeInForce.IOC, **kw)


def fills(result: PlaceResult) -> list[tuple[SignedOrder, int, int]]:
    """(maker, lots, dollars) per fill, for compact assertions."""
    return [(f.maker, f.size // LOT, f.price // USD) for f in result.fills]


def cancels(result: PlaceResult) -> list[tuple[SignedOrder, int, CancelReason]]:
    """(order, lots, reason) per cancellation."""
    return [(c.order, c.size // LOT, c.reason) for c in result.cancelled]


def reject(engine: MatchingEngine, code: ErrorCode, call: Callable[[], object]) -> CoreError:
    """`call` must raise `code` and leave the engine exactly as it was."""
    before = engine.snapshot()
    with pytest.raises(CoreError) as info:
        call()
    assert info.value.code == code, info.value
    assert engine.snapshot() == before
    return info.value


def lots_at(engine: MatchingEngine, levels: int = 10) -> tuple[list[tuple[int, int]], ...]:
    """Depth in (dollars, lots)."""
    bids, asks = engine.depth(0, levels)
    return (
        [(p // USD, s // LOT) for p, s in bids],
        [(p // USD, s // LOT) for p, s in asks],
    )
