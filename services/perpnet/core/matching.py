"""The matching engine: price-time priority over one book per market.

Pure and deterministic: the caller passes the clock (`now_ms`), oracle prices
and positions, and has already verified signatures; the same calls in the same
order give the same fills, cancels and book on every replica.

Rules worth knowing:
- A rejection raises CoreError and changes nothing, including the seen-set,
  so a rejected order may be resubmitted. An accepted order's hash is
  remembered until its expiry has been pruned by `expire`; afterwards any
  order whose expiry is before the pruning horizon is EXPIRED, so replays
  stay impossible even if a caller's clock steps back.
- Fills are at the maker's price. A maker found past its expiry while
  matching is removed (reason EXPIRED) instead of filled.
- Self-trade prevention compares owners (any subaccount) and follows the
  taker's `self_trade`.
- Reduce-only orders (IOC/FOK only) are capped at the caller's position so it
  never grows or flips; the capped-off size is reported as cancelled.
- Conditional orders wait outside the book. Triggers are checked only on
  oracle ticks (`on_oracle_price`), never at placement: one whose trigger
  already holds fires on the next tick. Fired orders enter, in placement
  order, with their signed kind and time in force (*_MARKET as IOC/FOK at the
  signed worst price, *_LIMIT usually GTT, resting with time priority from
  the tick that fired it); an entry that would be rejected then (FOK
  unfilled, post-only cross, nothing to reduce, expired) is reported as
  cancelled with that reason instead of raised.
- Every order's size is conserved: placed == filled + resting + cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from heapq import heapify, heappop, heappush
from typing import NamedTuple

from perpnet.core.book import Book, Entry, Side
from perpnet.core.errors import CoreError, ErrorCode, require
from perpnet.core.markets import MarketSet
from perpnet.core.orders import Order, OrderKind, SelfTrade, SignedOrder, TimeInForce


class CancelReason(StrEnum):
    USER = "USER"
    EXPIRED = "EXPIRED"
    SELF_TRADE = "SELF_TRADE"
    UNFILLED = "UNFILLED"  # the unmatched rest of an IOC or market order
    REDUCE_ONLY = "REDUCE_ONLY"  # size beyond what would reduce the position
    FOK_UNFILLED = "FOK_UNFILLED"
    POST_ONLY = "POST_ONLY"
    REPLACED = "REPLACED"  # the old order of an amend


class Fill(NamedTuple):
    maker: SignedOrder
    taker: SignedOrder
    size: int
    price: int


class Cancel(NamedTuple):
    order: SignedOrder
    size: int  # the size that will never fill
    reason: CancelReason


class OpenOrder(NamedTuple):
    order: SignedOrder
    remaining: int
    pending: bool  # a conditional waiting for its trigger
    position: int = 0  # for a conditional: the position the caller passed at placement


@dataclass(slots=True)
class PlaceResult:
    order: SignedOrder
    fills: list[Fill]
    resting: int  # size now resting in the book
    pending: bool  # accepted as a conditional, waiting for its trigger
    cancelled: list[Cancel]  # the taker's unfilled rest and makers removed on the way

    @property
    def filled(self) -> int:
        return sum(f.size for f in self.fills)


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """Everything needed to rebuild an engine that behaves identically from here on.

    `orders` (resting and pending) are in placement order, so re-adding them
    in turn reproduces time priority; `seen` is (expiry_ms, hash) sorted.
    """

    orders: tuple[OpenOrder, ...]
    seen: tuple[tuple[int, bytes], ...]
    horizon: int


PositionOf = Callable[[bytes, int], int]  # (owner, subaccount) -> signed position in the market

_PLAIN_KINDS = (OrderKind.LIMIT, OrderKind.MARKET)  # enter the book at once (not conditional)
_GTT = TimeInForce.GTT
_IOC = TimeInForce.IOC
_FOK = TimeInForce.FOK
_POST_ONLY = TimeInForce.POST_ONLY
_CANCEL_MAKER = SelfTrade.CANCEL_MAKER
_CANCEL_TAKER = SelfTrade.CANCEL_TAKER
_EXPIRED = CancelReason.EXPIRED
_SELF_TRADE = CancelReason.SELF_TRADE
_TRIGGER_REJECTIONS = {
    ErrorCode.EXPIRED: CancelReason.EXPIRED,
    ErrorCode.REDUCE_ONLY: CancelReason.REDUCE_ONLY,
    ErrorCode.FOK_UNFILLED: CancelReason.FOK_UNFILLED,
    ErrorCode.POST_ONLY: CancelReason.POST_ONLY,
}


def _limit_key(order: Order) -> int:
    """The largest opposite-side key the order crosses (see perpnet.core.book)."""
    return order.price if order.is_buy else -order.price


def _fok_fillable(side: Side, order: Order, need: int, now_ms: int) -> bool:
    """Would matching fill `need` in full? Mirrors `_match` without touching anything."""
    limit = _limit_key(order)
    owner = order.owner
    got = 0
    for key in side.keys_in_order():
        if key > limit:
            break
        for maker in side.levels[key].orders.values():
            if maker.expiry_ms < now_ms:
                continue
            if maker.owner == owner:
                if order.self_trade == _CANCEL_MAKER:
                    continue
                return False
            got += maker.remaining
            if got >= need:
                return True
    return False


class MatchingEngine:
    """Central limit order books for a set of markets, plus conditionals and replay guard."""

    __slots__ = (
        "_books",
        "_by_owner",
        "_expiries",
        "_horizon",
        "_index",
        "_pending",
        "_seen",
        "_seq",
    )

    def __init__(self, markets: MarketSet | None = None) -> None:
        market_set = markets if markets is not None else MarketSet()
        self._books = {m.market_id: Book(m) for m in market_set.markets}
        self._pending: dict[int, dict[bytes, Entry]] = {m: {} for m in self._books}
        self._index: dict[bytes, Entry] = {}  # every live order: resting or pending
        self._by_owner: dict[bytes, dict[bytes, Entry]] = {}
        self._seen: set[bytes] = set()
        self._expiries: list[tuple[int, bytes]] = []  # heap over accepted orders
        self._horizon = 0  # expire() has forgotten every hash that expired before this
        self._seq = 0

    # -- placing ------------------------------------------------------------------

    def place(self, signed: SignedOrder, now_ms: int, *, position: int = 0) -> PlaceResult:
        """Accept an order (matching it, resting it, or parking a conditional) or raise."""
        book = self._admit(signed, now_ms)
        order = signed.order
        if order.kind not in _PLAIN_KINDS:
            self._reduce_only_size(order, position)
            return self._park(signed, position)
        active = order.size
        if order.reduce_only or order.tif not in (_GTT, _IOC):  # skip the call when it is a no-op
            active = self._executable_size(book, order, position, now_ms)
        self._remember(signed)
        return self._execute(book, signed, active, now_ms)

    def _admit(self, signed: SignedOrder, now_ms: int) -> Book:
        """Checks that need no book: market, static validity, expiry, replay."""
        order = signed.order
        book = self._books.get(order.market_id)
        if book is None:
            raise CoreError(ErrorCode.UNKNOWN_MARKET, f"no market {order.market_id}")
        order.validate(book.market)
        expiry = order.expiry_ms
        if expiry < now_ms or expiry < self._horizon:
            raise CoreError(ErrorCode.EXPIRED, "order expired")
        if signed.hash in self._seen:
            if signed.hash in self._index:
                raise CoreError(ErrorCode.DUPLICATE_ORDER, "order already live")
            raise CoreError(ErrorCode.REPLAY, "order already seen")
        return book

    def _executable_size(self, book: Book, order: Order, position: int, now_ms: int) -> int:
        """Checks against the book at entry time; the size that may trade."""
        size = self._reduce_only_size(order, position) if order.reduce_only else order.size
        tif = order.tif
        if tif in (_GTT, _IOC):
            return size
        if tif == _FOK:
            opposite = book.opposite(order.is_buy)
            if not _fok_fillable(opposite, order, size, now_ms):
                raise CoreError(ErrorCode.FOK_UNFILLED, "fill-or-kill cannot fill in full")
        elif tif == _POST_ONLY:
            best = book.opposite(order.is_buy).best_key()
            if best is not None and best <= _limit_key(order):
                raise CoreError(ErrorCode.POST_ONLY, "post-only order would take")
        return size

    @staticmethod
    def _reduce_only_size(order: Order, position: int) -> int:
        if not order.reduce_only:
            return order.size
        require(order.tif in (_IOC, _FOK), ErrorCode.REDUCE_ONLY, "reduce-only needs IOC or FOK")
        reducible = -position if order.is_buy else position
        require(reducible > 0, ErrorCode.REDUCE_ONLY, "reduce-only order would not reduce")
        return min(order.size, reducible)

    def _remember(self, signed: SignedOrder) -> None:
        self._seen.add(signed.hash)
        heappush(self._expiries, (signed.order.expiry_ms, signed.hash))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _park(self, signed: SignedOrder, position: int) -> PlaceResult:
        self._remember(signed)
        self._add_pending(signed, position)
        return PlaceResult(signed, [], 0, True, [])

    def _add_pending(self, signed: SignedOrder, position: int) -> None:
        entry = Entry(signed, signed.order.size, self._next_seq(), position)
        self._pending[signed.order.market_id][signed.hash] = entry
        self._link(entry)

    def _rest(self, book: Book, signed: SignedOrder, remaining: int) -> None:
        entry = Entry(signed, remaining, self._next_seq())
        (book.bids if signed.order.is_buy else book.asks).add(entry)
        self._link(entry)

    def _link(self, entry: Entry) -> None:
        self._index[entry.hash] = entry
        mine = self._by_owner.get(entry.owner)
        if mine is None:
            self._by_owner[entry.owner] = {entry.hash: entry}
        else:
            mine[entry.hash] = entry

    def _unlink(self, entry: Entry) -> None:
        del self._index[entry.hash]
        mine = self._by_owner[entry.owner]
        del mine[entry.hash]
        if not mine:
            del self._by_owner[entry.owner]

    def _execute(self, book: Book, signed: SignedOrder, active: int, now_ms: int) -> PlaceResult:
        """Match an admitted order, then rest or cancel what is left; cannot fail."""
        order = signed.order
        fills: list[Fill] = []
        cancels: list[Cancel] = []
        if active < order.size:
            cancels.append(Cancel(signed, order.size - active, CancelReason.REDUCE_ONLY))
        tif = order.tif
        left = active
        if tif != _POST_ONLY:
            opposite = book.asks if order.is_buy else book.bids
            heap = opposite.heap
            limit = order.price if order.is_buy else -order.price  # see _limit_key
            if heap and heap[0] <= limit:  # may be a stale key: _match skips it
                left = self._match(opposite, signed, active, limit, now_ms, fills, cancels)
        if not left:
            return PlaceResult(signed, fills, 0, False, cancels)
        if tif in (_GTT, _POST_ONLY):
            self._rest(book, signed, left)
            return PlaceResult(signed, fills, left, False, cancels)
        cancels.append(Cancel(signed, left, CancelReason.UNFILLED))
        return PlaceResult(signed, fills, 0, False, cancels)

    def _match(
        self,
        side: Side,
        taker: SignedOrder,
        size: int,
        limit: int,
        now_ms: int,
        fills: list[Fill],
        cancels: list[Cancel],
    ) -> int:
        """Take from `side` best first; returns the taker's unmatched size (0 if STP cancelled it).

        The hot path: locals bound once, makers consumed in place and unlinked
        after each level so the level dict is never mutated while iterated.
        """
        order = taker.order
        owner = order.owner
        levels = side.levels
        heap = side.heap
        index = self._index
        by_owner = self._by_owner
        while size and heap:
            key = heap[0]
            if key > limit:
                break
            level = levels.get(key)
            if level is None:
                side.pop_top()
                continue
            orders = level.orders
            done: list[Entry] = []
            taken = 0
            for maker in orders.values():
                if maker.expiry_ms < now_ms or maker.owner == owner:
                    if maker.expiry_ms < now_ms:
                        cancels.append(Cancel(maker.signed, maker.remaining, _EXPIRED))
                        done.append(maker)
                        continue
                    stp = order.self_trade
                    if stp != _CANCEL_TAKER:
                        cancels.append(Cancel(maker.signed, maker.remaining, _SELF_TRADE))
                        done.append(maker)
                    if stp == _CANCEL_MAKER:
                        continue
                    cancels.append(Cancel(taker, size, _SELF_TRADE))
                    size = 0
                    break
                rem = maker.remaining
                if rem > size:
                    fills.append(Fill(maker.signed, taker, size, maker.price))
                    maker.remaining = rem - size
                    taken += size
                    size = 0
                    break
                fills.append(Fill(maker.signed, taker, rem, maker.price))
                done.append(maker)
                size -= rem
                if not size:
                    break
            for maker in done:
                taken += maker.remaining
                del orders[maker.seq]
                del index[maker.hash]
                mine = by_owner[maker.owner]
                del mine[maker.hash]
                if not mine:
                    del by_owner[maker.owner]
                maker.side = None
            level.total -= taken
            if not orders:
                side.pop_top()
        return size

    # -- cancelling, amending, expiring -------------------------------------------

    def cancel(self, order_hash: bytes, owner: bytes, now_ms: int) -> Cancel:
        """Remove a resting or pending order of `owner` (reason EXPIRED if it already had)."""
        entry = self._live(order_hash, owner)
        self._remove(entry)
        reason = _EXPIRED if entry.expiry_ms < now_ms else CancelReason.USER
        return Cancel(entry.signed, entry.remaining, reason)

    def amend(
        self, old_hash: bytes, new: SignedOrder, now_ms: int, *, position: int = 0
    ) -> PlaceResult:
        """Cancel-replace, atomically: if `new` is rejected the old order stays as it was.

        The new order is a fresh order of its own size. It keeps the old one's
        place in the queue only when it is a plain resting limit at the same
        price and no larger than the old remaining size; otherwise it is
        placed like any new order, behind everyone.
        """
        old = self._live(old_hash, new.order.owner)
        require(old.expiry_ms >= now_ms, ErrorCode.UNKNOWN_ORDER, "the old order has expired")
        before, order = old.signed.order, new.order
        require(
            before.market_id == order.market_id and before.is_buy == order.is_buy,
            ErrorCode.INVALID_FIELD,
            "an amend keeps the market and side",
        )
        book = self._admit(new, now_ms)
        replaced = Cancel(old.signed, old.remaining, CancelReason.REPLACED)
        if order.is_conditional:
            self._reduce_only_size(order, position)
            self._remove(old)
            result = self._park(new, position)
        else:
            active = self._executable_size(book, order, position, now_ms)
            if (
                old.side is not None
                and order.kind == OrderKind.LIMIT
                and order.tif in (_GTT, _POST_ONLY)
                and order.price == old.price
                and order.size <= old.remaining
            ):
                self._replace_in_place(old, new)
                return PlaceResult(new, [], order.size, False, [replaced])
            self._remove(old)
            self._remember(new)
            result = self._execute(book, new, active, now_ms)
        result.cancelled.insert(0, replaced)
        return result

    def _replace_in_place(self, entry: Entry, new: SignedOrder) -> None:
        side = entry.side
        assert side is not None
        side.levels[entry.key].total += new.order.size - entry.remaining
        self._unlink(entry)
        entry.signed = new
        entry.hash = new.hash
        entry.remaining = new.order.size
        entry.expiry_ms = new.order.expiry_ms
        self._link(entry)
        self._remember(new)

    def _live(self, order_hash: bytes, owner: bytes) -> Entry:
        entry = self._index.get(order_hash)
        if entry is None:
            raise CoreError(ErrorCode.UNKNOWN_ORDER, "no such resting or pending order")
        if entry.owner != owner:
            raise CoreError(ErrorCode.NOT_OWNER, "order belongs to another account")
        return entry

    def _remove(self, entry: Entry) -> None:
        if entry.side is None:
            del self._pending[entry.signed.order.market_id][entry.hash]
        else:
            entry.side.remove(entry)
        self._unlink(entry)

    def expire(self, now_ms: int) -> list[SignedOrder]:
        """Drop live orders past expiry (in (expiry, hash) order) and forget their hashes."""
        expired: list[SignedOrder] = []
        heap = self._expiries
        while heap and heap[0][0] < now_ms:
            _, order_hash = heappop(heap)
            self._seen.discard(order_hash)
            entry = self._index.get(order_hash)
            if entry is not None:
                self._remove(entry)
                expired.append(entry.signed)
        self._horizon = max(self._horizon, now_ms)
        return expired

    # -- conditionals -------------------------------------------------------------

    def on_oracle_price(
        self,
        market_id: int,
        price: int,
        now_ms: int,
        *,
        position_of: PositionOf | None = None,
    ) -> list[PlaceResult]:
        """Fire the market's conditionals that `price` triggers, in placement order.

        `position_of` gives a reduce-only order's current position; without it
        the position passed when the order was placed is used.
        """
        pending = self._pending.get(market_id)
        if pending is None:
            raise CoreError(ErrorCode.UNKNOWN_MARKET, f"no market {market_id}")
        book = self._books[market_id]
        fired = [e for e in pending.values() if e.signed.order.triggered_by(price)]
        results = []
        for entry in fired:
            self._remove(entry)
            signed, order = entry.signed, entry.signed.order
            position = entry.position
            if position_of is not None:
                position = position_of(order.owner, order.subaccount)
            try:
                require(order.expiry_ms >= now_ms, ErrorCode.EXPIRED, "expired before its trigger")
                active = self._executable_size(book, order, position, now_ms)
            except CoreError as err:
                reason = _TRIGGER_REJECTIONS[err.code]
                results.append(
                    PlaceResult(signed, [], 0, False, [Cancel(signed, order.size, reason)])
                )
                continue
            results.append(self._execute(book, signed, active, now_ms))
        return results

    # -- queries ------------------------------------------------------------------

    def book(self, market_id: int) -> Book:
        book = self._books.get(market_id)
        if book is None:
            raise CoreError(ErrorCode.UNKNOWN_MARKET, f"no market {market_id}")
        return book

    def best_bid(self, market_id: int) -> int | None:
        return self.book(market_id).best_bid()

    def best_ask(self, market_id: int) -> int | None:
        return self.book(market_id).best_ask()

    def depth(
        self, market_id: int, levels: int
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best `levels` (price, total size) per side, best first."""
        return self.book(market_id).depth(levels)

    def impact_prices(self, market_id: int, impact_notional: int) -> tuple[int | None, int | None]:
        """(impact bid, impact ask): average prices to sell/buy the notional; None if too thin."""
        return self.book(market_id).impact_prices(impact_notional)

    def resting(self, order_hash: bytes) -> OpenOrder | None:
        entry = self._index.get(order_hash)
        return None if entry is None else _open(entry)

    def open_orders(self, owner: bytes) -> list[OpenOrder]:
        """The owner's live orders (all subaccounts, resting and pending) in placement order."""
        mine = self._by_owner.get(owner, {})
        return [_open(e) for e in sorted(mine.values(), key=_seq_of)]

    # -- persistence --------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        entries = sorted(self._index.values(), key=_seq_of)
        return EngineSnapshot(
            orders=tuple(_open(e) for e in entries),
            seen=tuple(sorted(self._expiries)),
            horizon=self._horizon,
        )

    @classmethod
    def restore(cls, snapshot: EngineSnapshot, markets: MarketSet | None = None) -> MatchingEngine:
        """Rebuild an engine from `snapshot`; it then behaves exactly like the original."""
        engine = cls(markets)
        engine._horizon = snapshot.horizon
        engine._expiries = list(snapshot.seen)
        heapify(engine._expiries)
        engine._seen = {order_hash for _, order_hash in snapshot.seen}
        for live in snapshot.orders:
            if live.pending:
                engine._add_pending(live.order, live.position)
            else:
                engine._rest(engine.book(live.order.order.market_id), live.order, live.remaining)
        return engine


def _seq_of(entry: Entry) -> int:
    return entry.seq


def _open(entry: Entry) -> OpenOrder:
    pending = entry.side is None
    return OpenOrder(entry.signed, entry.remaining, pending, entry.position if pending else 0)
