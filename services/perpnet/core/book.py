"""One market's central limit order book: price levels in price-time priority.

Shape, chosen for the matcher's hot path:
- each side maps a *key* to a level; the key is the price for asks and minus
  the price for bids, so on both sides "better" means "smaller key" and a
  taker crosses every level whose key is <= its own limit key;
- a level is an insertion-ordered dict seq -> entry (time priority, O(1)
  cancel from anywhere in the queue) plus its total size;
- the best key comes from a min-heap with lazy deletion: emptied levels leave
  their key behind, skipped when it reaches the top. `in_heap` keeps one heap
  item per key, so the heap stays bounded by the distinct live keys plus
  those waiting to be skipped.

The matching engine (perpnet.core.matching) walks `Side.levels`/`Side.heap`
directly; everything else goes through the methods here.
"""

from __future__ import annotations

from collections.abc import Iterator
from heapq import heappop, heappush, nsmallest

from perpnet.core.errors import ErrorCode, require
from perpnet.core.markets import Market
from perpnet.core.orders import SignedOrder


class Entry:
    """A live order of the engine: resting in a level, or a conditional awaiting its trigger.

    Mutable on purpose: fills decrement `remaining` in place, and an amend
    that keeps time priority swaps `signed`/`hash` without moving the entry.
    """

    __slots__ = (
        "expiry_ms",
        "hash",
        "key",
        "owner",
        "position",
        "price",
        "remaining",
        "seq",
        "side",
        "signed",
    )

    def __init__(self, signed: SignedOrder, remaining: int, seq: int, position: int = 0) -> None:
        order = signed.order
        self.signed = signed
        self.hash = signed.hash
        self.owner = order.owner
        self.price = order.price
        self.key = -order.price if order.is_buy else order.price
        self.remaining = remaining
        self.seq = seq
        self.expiry_ms = order.expiry_ms
        self.position = position  # the caller's position at placement (conditionals only)
        self.side: Side | None = None  # None while not in a book (conditionals)


class Level:
    """The orders at one price, oldest first, and their total remaining size."""

    __slots__ = ("orders", "total")

    def __init__(self) -> None:
        self.orders: dict[int, Entry] = {}
        self.total = 0


class Side:
    """Bids or asks of one book; keys are prices (asks) or negated prices (bids)."""

    __slots__ = ("heap", "in_heap", "is_bid", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.heap: list[int] = []
        self.in_heap: set[int] = set()

    def add(self, entry: Entry) -> None:
        key = entry.key
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = Level()
            if key not in self.in_heap:
                self.in_heap.add(key)
                heappush(self.heap, key)
        level.orders[entry.seq] = entry
        level.total += entry.remaining
        entry.side = self

    def remove(self, entry: Entry) -> None:
        """Unlink an entry; an emptied level's heap key is skipped lazily by `best_key`."""
        level = self.levels[entry.key]
        del level.orders[entry.seq]
        level.total -= entry.remaining
        if not level.orders:
            del self.levels[entry.key]
        entry.side = None

    def best_key(self) -> int | None:
        heap = self.heap
        levels = self.levels
        while heap:
            key = heap[0]
            if key in levels:
                return key
            self.pop_top()
        return None

    def pop_top(self) -> None:
        """Drop the heap's top key (its level is empty or being emptied)."""
        key = heappop(self.heap)
        self.in_heap.discard(key)
        self.levels.pop(key, None)

    def price_of(self, key: int) -> int:
        return -key if self.is_bid else key

    def keys_in_order(self, limit: int | None = None) -> list[int]:
        """Live keys best first; all of them, or the best `limit`."""
        if limit is None:
            return sorted(self.levels)
        return nsmallest(limit, self.levels)

    def depth(self, levels: int) -> list[tuple[int, int]]:
        return [(self.price_of(k), self.levels[k].total) for k in self.keys_in_order(levels)]

    def entries(self) -> Iterator[Entry]:
        """Every resting entry in priority order (best price, then oldest)."""
        for key in self.keys_in_order():
            yield from self.levels[key].orders.values()

    def impact_price(self, notional: int, size_scale: int) -> int | None:
        """Average price of taking `notional` collateral quantums from this side, or None.

        With whole levels of total size S and quote N taken, and the rest
        R = notional - N taken at price p, the base bought is S + R*scale/p,
        so the average is notional*scale*p / (S*p + R*scale). Exact rationals,
        then rounded against the taker: floored on bids (what a seller gets),
        ceiled on asks (what a buyer pays).
        """
        require(notional > 0, ErrorCode.INVALID_FIELD, "impact notional must be positive")
        taken_size = 0
        taken_quote = 0
        for key in self.keys_in_order():
            price = self.price_of(key)
            total = self.levels[key].total
            quote = total * price // size_scale
            if taken_quote + quote >= notional:
                rest = notional - taken_quote
                numerator = notional * size_scale * price
                denominator = taken_size * price + rest * size_scale
                return numerator // denominator if self.is_bid else -(-numerator // denominator)
            taken_size += total
            taken_quote += quote
        return None


class Book:
    """Both sides of one market."""

    __slots__ = ("asks", "bids", "market")

    def __init__(self, market: Market) -> None:
        self.market = market
        self.bids = Side(is_bid=True)
        self.asks = Side(is_bid=False)

    def own(self, is_buy: bool) -> Side:
        return self.bids if is_buy else self.asks

    def opposite(self, is_buy: bool) -> Side:
        return self.asks if is_buy else self.bids

    def best_bid(self) -> int | None:
        key = self.bids.best_key()
        return None if key is None else -key

    def best_ask(self) -> int | None:
        return self.asks.best_key()

    def depth(self, levels: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self.bids.depth(levels), self.asks.depth(levels)

    def impact_prices(self, notional: int) -> tuple[int | None, int | None]:
        scale = self.market.size_scale
        return self.bids.impact_price(notional, scale), self.asks.impact_price(notional, scale)

    def entries(self) -> Iterator[Entry]:
        """Bids then asks, each in priority order."""
        yield from self.bids.entries()
        yield from self.asks.entries()
