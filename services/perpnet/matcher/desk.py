"""The matcher's logic without its transport: book, fills to the sequencer, durability.

Every command (place, amend, cancel, an oracle tick firing conditionals,
expiry) runs under one lock, in this order:
1. the core MatchingEngine decides, in memory;
2. each fill becomes a Trade transaction, submitted to the sequencer in
   order (durable there when SubmitTx returns);
3. the rows of every order the command touched are written in one database
   transaction;
4. only then is the caller answered.

Placing is pipelined (group commit): orders queue while a micro-batch is in
flight, and the next micro-batch takes every queued order. It matches them in
memory in arrival order, submits all their fills in one SubmitTxs call (a
prefix: the sequencer applies them in order and stops at a refusal), writes
every touched row in one transaction, and only then answers each order: the
same four steps, each paid once per micro-batch instead of once per order.
If a fill of the micro-batch is refused, the book goes back to where it was
before it (the live rows, which were written before it began) and its orders
are placed again one at a time, exactly as above; fills that the sequencer
already committed are recognised and not sent again, so the outcome is the
one sequential placing would have had. Within a micro-batch each order is
checked (the pre-trade `check`, e.g. initial margin) just before the engine
places it, so the earlier orders of the batch already count as its open
orders, and reduce-only orders see the positions the batch's own earlier fills
leave: the same refusals and sizes as placing one at a time. If writing the
rows fails after the fills were committed, the book is rewound likewise (with
the committed fills taken off their makers) and every order of it gets the
error: no unacknowledged order stays live.

So after a kill -9 the database holds every acknowledged order and the
sequencer's log every committed fill. `recover` rebuilds the book from the
live rows, each with remaining = min(row, size - filled on chain): fills
committed after the last row write (a crash between 2 and 3) are subtracted,
and fills never committed (a crash inside 2) are given back.

A fill the sequencer refuses is undone rather than left in the book: the
culprit order (the account the refusal names, else the taker) is cancelled
with reason FILL_REFUSED, and makers that lost size to refused fills get it
back at the head of their price level, where they were.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from heapq import heappop, heappush
from typing import NamedTuple

from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import MarketSet
from perpnet.core.matching import (
    Cancel,
    CancelReason,
    EngineSnapshot,
    Fill,
    MatchingEngine,
    OpenOrder,
    PlaceResult,
)
from perpnet.core.orders import Order, OrderKind, SignedOrder, TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Trade, Tx
from perpnet.matcher.store import LIVE, OrderRow, OrderStore
from perpnet.runtime.clock import now_ms
from perpnet.runtime.follower import MAX_RESTAMPS, RefusedError, next_stamp
from perpnet.runtime.models import OrderStatus

FILL_REFUSED = "FILL_REFUSED"
_ACCOUNT = re.compile(r"account (\d+)")

Check = Callable[[SignedOrder, bytes], Awaitable[None]]  # (order, hash it replaces): CoreError
Submit = Callable[[Tx], Awaitable[int]]  # SubmitTx: the seq, or raises RefusedError
Submitted = int | RefusedError | None
# SubmitTxs: in order, a seq for each applied, the RefusedError of the first one refused
# and None for every later one (not applied).
SubmitMany = Callable[[Sequence[Tx]], Awaitable[list[Submitted]]]
MAX_BATCH_ORDERS = 256


def one_by_one(submit: Submit) -> SubmitMany:
    """SubmitMany's prefix contract over a one-at-a-time Submit."""

    async def many(txs: Sequence[Tx]) -> list[Submitted]:
        out: list[Submitted] = []
        for tx in txs:
            if out and not isinstance(out[-1], int):
                out.append(None)
                continue
            try:
                out.append(await submit(tx))
            except RefusedError as refused:
                out.append(refused)
        return out

    return many


class Cancelled(NamedTuple):
    order: SignedOrder
    size: int
    reason: str  # a CancelReason or FILL_REFUSED


@dataclass(slots=True)
class Outcome:
    """What a command did, as acknowledged: committed fills only."""

    order: SignedOrder | None
    fills: list[Fill] = field(default_factory=list)
    resting: int = 0
    pending: bool = False
    cancelled: list[Cancelled] = field(default_factory=list)
    refusal: str = ""  # the sequencer's refusal of a fill, if one happened


@dataclass(slots=True)
class _Placing:
    """An order waiting in (or placed by) a micro-batch, and its caller's answer."""

    signed: SignedOrder
    at_ms: int | None
    answer: asyncio.Future[Outcome]
    position: int = 0

    def done(self, outcome: Outcome) -> None:
        if not self.answer.done():  # the caller may have gone
            self.answer.set_result(outcome)

    def fail(self, exc: BaseException) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class _Positions:
    """Positions as the micro-batch's own fills leave them.

    The base is the committed state's, read once per account and market; the
    batch's fills are not committed while it matches, so they are never in the
    base and are added here instead.
    """

    def __init__(self, read: Callable[[Order], int]) -> None:
        self.read = read
        self.base: dict[tuple[bytes, int, int], int] = {}
        self.moved: dict[tuple[bytes, int, int], int] = {}

    def of(self, order: Order) -> int:
        key = (order.owner, order.subaccount, order.market_id)
        if key not in self.base:
            self.base[key] = self.read(order)
        return self.base[key] + self.moved.get(key, 0)

    def add(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            bought = fill.size if fill.taker.order.is_buy else -fill.size
            for signed, change in ((fill.taker, bought), (fill.maker, -bought)):
                order = signed.order
                key = (order.owner, order.subaccount, order.market_id)
                self.moved[key] = self.moved.get(key, 0) + change

    def rebased(self) -> _Positions:
        """The same bases, none of the batch's fills (for replaying it one order at a time)."""
        fresh = _Positions(self.read)
        fresh.base = self.base
        return fresh


def _key(trade: Trade) -> tuple[bytes, bytes, int, int]:
    """A fill's identity (a taker meets a maker once per order): what a restamp keeps."""
    return trade.maker.hash, trade.taker.hash, trade.size, trade.price


class OrderDesk:
    """Book + persistence + submission; `state` is the replica of committed state."""

    def __init__(
        self,
        markets: MarketSet,
        store: OrderStore,
        state: Callable[[], ExchangeState],
        submit: Submit,
        *,
        submit_many: SubmitMany | None = None,
        max_batch: int = MAX_BATCH_ORDERS,
        on_fill: Callable[[Fill], None] | None = None,
        check: Check | None = None,
    ) -> None:
        self.markets = markets
        self.engine = MatchingEngine(markets)
        self.store = store
        self.state = state
        self.submit = submit
        self.submit_many = submit_many or one_by_one(submit)
        self.max_batch = max_batch
        self.on_fill = on_fill
        self.check = check
        self._intake: list[_Placing] = []
        self._drainer: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.match_seconds: list[float] = []  # drained by the service into its histogram
        # (orders, seconds submitting, seconds writing) per micro-batch; drained likewise
        self.batches: list[tuple[int, float, float]] = []
        self._seq = 0
        self._rows: dict[bytes, int] = {}  # live order -> its row's seq
        self._terminal: list[tuple[int, bytes]] = []  # (expiry, hash) of terminal rows

    # -- commands -------------------------------------------------------------------

    async def place(self, signed: SignedOrder, at_ms: int | None = None) -> Outcome:
        """Place in the next micro-batch; answered once it is committed and written."""
        return await self.queue(signed, at_ms)

    def queue(self, signed: SignedOrder, at_ms: int | None = None) -> asyncio.Future[Outcome]:
        """`place` without a coroutine per order: the future of its answer."""
        placing = _Placing(signed, at_ms, asyncio.get_running_loop().create_future())
        self._intake.append(placing)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return placing.answer

    async def _drain(self) -> None:
        while self._intake:
            async with self.lock:
                batch = self._intake[: self.max_batch]
                del self._intake[: self.max_batch]
                try:
                    await self._place_batch(batch)
                except Exception as exc:  # e.g. the row write failed: nobody is answered yes
                    for placing in batch:
                        placing.fail(exc)
                finally:
                    for placing in batch:
                        placing.answer.cancel()  # a no-op for every answered one

    async def amend(self, old_hash: bytes, new: SignedOrder, at_ms: int | None = None) -> Outcome:
        async with self.lock:
            now = now_ms() if at_ms is None else at_ms
            if self.check is not None:
                await self.check(new, old_hash)
            position = self.position(new.order)
            old = self.engine.resting(old_hash)
            result = self.engine.amend(old_hash, new, now, position=position)
            if old is not None and _in_place(old, new):
                self._rows[new.hash] = self._rows.pop(old_hash)  # it kept its place in the queue
            return await self._settle([result], now)

    async def cancel(self, order_hash: bytes, owner: bytes, at_ms: int | None = None) -> Cancel:
        async with self.lock:
            now = now_ms() if at_ms is None else at_ms
            cancel = self.engine.cancel(order_hash, owner, now)
            await self._persist([cancel.order], {cancel.order.hash: cancel.reason}, now)
            return cancel

    async def on_oracle_price(self, market_id: int, price: int, at_ms: int | None = None) -> None:
        """Fire the conditionals this price triggers, and settle what they do."""
        async with self.lock:
            now = now_ms() if at_ms is None else at_ms
            state = self.state()

            def position_of(owner: bytes, subaccount: int) -> int:
                account_id = state.account_id(owner, subaccount)
                return 0 if account_id is None else state.account(account_id).size(market_id)

            results = self.engine.on_oracle_price(market_id, price, now, position_of=position_of)
            if results:
                await self._settle(results, now, fired=True)

    async def expire(self, at_ms: int | None = None) -> list[SignedOrder]:
        """Drop orders past their expiry, and forget rows of finished orders that expired."""
        async with self.lock:
            now = now_ms() if at_ms is None else at_ms
            expired = self.engine.expire(now)
            await self._persist(expired, {s.hash: CancelReason.EXPIRED for s in expired}, now)
            done: list[bytes] = []
            while self._terminal and self._terminal[0][0] < now:
                done.append(heappop(self._terminal)[1])
            await self.store.forget(done)
            return expired

    # -- queries --------------------------------------------------------------------

    def position(self, order: Order) -> int:
        state = self.state()
        account_id = state.account_id(order.owner, order.subaccount)
        return 0 if account_id is None else state.account(account_id).size(order.market_id)

    def open_orders(self, order: Order, exclude: bytes = b"") -> list[Order]:
        """The account's other live orders, each sized at what remains (for the margin check)."""
        return [
            replace(live.order.order, size=live.remaining)
            for live in self.engine.open_orders(order.owner)
            if live.order.order.subaccount == order.subaccount and live.order.hash != exclude
        ]

    # -- micro-batches --------------------------------------------------------------

    async def _place_batch(self, batch: list[_Placing]) -> None:
        now = now_ms()
        placed: list[tuple[_Placing, PlaceResult]] = []
        positions = _Positions(self.position)
        for placing in batch:
            placing.at_ms = now if placing.at_ms is None else placing.at_ms
            try:
                if self.check is not None:  # the batch's earlier orders already rest
                    await self.check(placing.signed, b"")
                placing.position = positions.of(placing.signed.order)
                started = time.perf_counter()
                result = self.engine.place(placing.signed, placing.at_ms, position=placing.position)
            except CoreError as exc:
                placing.fail(exc)  # refused before anything changed
                continue
            self.match_seconds.append(time.perf_counter() - started)
            positions.add(result.fills)
            placed.append((placing, result))
        stamp = self._stamp()
        trades = [
            Trade(stamp, f.maker, f.taker, f.size, f.price) for _, r in placed for f in r.fills
        ]
        started = time.perf_counter()
        submitted = await self._submit_prefix(trades)
        submitting = time.perf_counter() - started
        if not all(isinstance(s, int) for s in submitted):
            await self._one_by_one([p for p, _ in placed], trades, submitted, positions)
            return
        touched: dict[bytes, SignedOrder] = {}
        reasons: dict[bytes, str] = {}
        for _, result in placed:
            touched[result.order.hash] = result.order
            for fill in result.fills:
                touched[fill.maker.hash] = fill.maker
            for cancel in result.cancelled:
                touched[cancel.order.hash] = cancel.order
                reasons.setdefault(cancel.order.hash, cancel.reason)
        started = time.perf_counter()
        try:
            await self._persist(touched.values(), reasons, now)
        except Exception:  # committed, not written: no order of it may stay live
            spent: dict[bytes, int] = {}
            for _, result in placed:
                for fill in result.fills:
                    spent[fill.maker.hash] = spent.get(fill.maker.hash, 0) + fill.size
            await self._rewind({p.signed.hash for p, _ in placed}, spent)
            raise
        self.batches.append((len(batch), submitting, time.perf_counter() - started))
        for placing, result in placed:
            if self.on_fill is not None:
                for fill in result.fills:
                    self.on_fill(fill)
            cancelled = [Cancelled(c.order, c.size, c.reason) for c in result.cancelled]
            placing.done(
                Outcome(result.order, result.fills, result.resting, result.pending, cancelled)
            )

    async def _submit_prefix(self, trades: list[Trade]) -> list[Submitted]:
        """Submit as a prefix; on CLOCK (another submitter's later stamp got in first) the
        rest is restamped, in place in `trades`, and sent again."""
        done: list[Submitted] = []
        for _ in range(MAX_RESTAMPS):
            if len(done) == len(trades):
                return done
            got = await self.submit_many(trades[len(done) :])
            applied = next((i for i, s in enumerate(got) if not isinstance(s, int)), len(got))
            done += got[:applied]
            refused = got[applied] if applied < len(got) else None
            if not isinstance(refused, RefusedError) or refused.code != ErrorCode.CLOCK:
                return done + got[applied:]
            first = len(done)
            stamp = next_stamp(trades[first].timestamp_ms)
            trades[first:] = [replace(t, timestamp_ms=stamp) for t in trades[first:]]
        clock = RefusedError(ErrorCode.CLOCK, "the sequencer's clock kept moving past ours")
        return done + [clock] + [None] * (len(trades) - len(done) - 1)

    async def _one_by_one(
        self,
        placed: list[_Placing],
        trades: list[Trade],
        submitted: list[Submitted],
        positions: _Positions,
    ) -> None:
        """A fill of the micro-batch was refused: rewind the book to before the micro-batch,
        then place its orders one at a time, reusing the fills already committed."""
        committed = {
            _key(t): s for t, s in zip(trades, submitted, strict=True) if isinstance(s, int)
        }
        sent = {_key(t): t for t in trades}

        async def again(tx: Tx) -> int:
            key = _key(tx) if isinstance(tx, Trade) else None
            if key in committed:
                return committed[key]
            return await self.submit(sent.get(key, tx) if key else tx)

        await self._rewind({p.signed.hash for p in placed})
        replay = positions.rebased()  # the batch's checks stand: they saw the same book
        for placing in placed:
            assert placing.at_ms is not None
            try:
                position = replay.of(placing.signed.order)
                result = self.engine.place(placing.signed, placing.at_ms, position=position)
                outcome = await self._settle([result], placing.at_ms, submit=again)
            except CoreError as exc:
                placing.fail(exc)
                continue
            replay.add(outcome.fills)
            placing.done(outcome)

    async def _rewind(self, placed: set[bytes], spent: dict[bytes, int] | None = None) -> None:
        """The engine as before the micro-batch: the live rows (all written before it began),
        less `spent` (fills committed but not written), and every order seen except the
        micro-batch's own.

        Not capped by the replica's fills as `recover` is: when the batch is replayed one
        order at a time its committed fills must match again to be recognised, and the
        replica may already hold them."""
        spent = spent or {}
        now = self.engine.snapshot()
        positions = {o.order.hash: o.position for o in now.orders if o.pending}
        rows, _ = await self.store.load(live_only=True)
        rows = [replace(r, remaining=r.remaining - spent.get(r.signed.hash, 0)) for r in rows]
        rows = [r for r in rows if r.remaining > 0]
        live = tuple(
            OpenOrder(r.signed, r.remaining, r.status == OrderStatus.PENDING,
                      positions.get(r.signed.hash, 0))
            for r in rows
        )  # fmt: skip
        self._rows = {r.signed.hash: r.seq for r in rows}
        seen = tuple(s for s in now.seen if s[1] not in placed)
        self.engine = MatchingEngine.restore(EngineSnapshot(live, seen, now.horizon), self.markets)

    # -- settling -------------------------------------------------------------------

    async def _settle(
        self,
        results: list[PlaceResult],
        now: int,
        fired: bool = False,
        submit: Submit | None = None,
    ) -> Outcome:
        """Submit the fills, undo refused ones, persist every touched order; the last outcome."""
        outcome = Outcome(None)
        touched: dict[bytes, SignedOrder] = {}
        reasons: dict[bytes, str] = {}
        for result in results:
            outcome = await self._submit_fills(result, submit or self.submit)
            for c in outcome.cancelled:
                reasons.setdefault(c.order.hash, c.reason)
            touched[result.order.hash] = result.order
            if fired and result.order.hash in self._rows:
                self._rows.pop(result.order.hash)  # a fired conditional rests with a new seq
            for fill in result.fills:
                touched[fill.maker.hash] = fill.maker
            for cancel in result.cancelled:
                touched[cancel.order.hash] = cancel.order
            live = self.engine.resting(result.order.hash)
            outcome.resting = 0 if live is None or live.pending else live.remaining
            outcome.pending = live is not None and live.pending
        await self._persist(touched.values(), reasons, now)
        return outcome

    async def _submit_fills(self, result: PlaceResult, submit: Submit) -> Outcome:
        taker = result.order
        outcome = Outcome(taker)
        outcome.cancelled = [Cancelled(c.order, c.size, c.reason) for c in result.cancelled]
        give_back: list[Fill] = []
        for fill in result.fills:
            if give_back:  # the taker was refused: none of its later fills is tried
                give_back.append(fill)
                continue
            trade = Trade(self._stamp(), fill.maker, fill.taker, fill.size, fill.price)
            try:
                await submit(trade)
            except RefusedError as refused:
                outcome.refusal = refused.message
                if self._blames_maker(refused, fill):
                    outcome.cancelled.append(Cancelled(taker, fill.size, FILL_REFUSED))
                    self._drop(fill.maker, outcome, 0)
                else:
                    give_back.append(fill)
                continue
            outcome.fills.append(fill)
            if self.on_fill is not None:
                self.on_fill(fill)
        if give_back:
            self._drop(taker, outcome, sum(f.size for f in give_back))
            self._give_back(give_back)
        return outcome

    def _blames_maker(self, refused: RefusedError, fill: Fill) -> bool:
        """Does the refusal name the maker's account (else the taker is held responsible)?"""
        named = _ACCOUNT.search(refused.message)
        if named is None:
            return False
        order = fill.maker.order
        return self.state().account_id(order.owner, order.subaccount) == int(named.group(1))

    def _drop(self, signed: SignedOrder, outcome: Outcome, refused_size: int) -> None:
        """Cancel an order whose fill was refused: its refused size and whatever still rests."""
        live = self.engine.resting(signed.hash)
        resting = 0
        if live is not None:
            self.engine.cancel(signed.hash, signed.order.owner, 0)
            resting = live.remaining
        if resting + refused_size:
            outcome.cancelled.append(Cancelled(signed, resting + refused_size, FILL_REFUSED))

    def _give_back(self, fills: list[Fill]) -> None:
        """Return refused fills' size to their makers, at the head of their price levels.

        A maker consumed by the match was at the head of its level (makers fill
        best price first, oldest first), so putting the restored makers first,
        in fill order, restores time priority exactly. Rare: costs O(book).
        """
        snapshot = self.engine.snapshot()
        orders = list(snapshot.orders)
        index = {live.order.hash: i for i, live in enumerate(orders)}
        restored: list[OpenOrder] = []
        for fill in fills:
            i = index.get(fill.maker.hash)
            if i is None:
                restored.append(OpenOrder(fill.maker, fill.size, False))
            else:
                orders[i] = orders[i]._replace(remaining=orders[i].remaining + fill.size)
        rebuilt = EngineSnapshot(tuple(restored + orders), snapshot.seen, snapshot.horizon)
        self.engine = MatchingEngine.restore(rebuilt, self.markets)

    def _stamp(self) -> int:
        return max(now_ms(), self.state().clock_ms)

    # -- persistence ----------------------------------------------------------------

    def _row(self, signed: SignedOrder, reason: str | None) -> OrderRow:
        live = self.engine.resting(signed.hash)
        if live is not None:
            seq = self._rows.get(signed.hash)
            if seq is None:
                seq = self._rows[signed.hash] = self._next_seq()
            status = OrderStatus.PENDING if live.pending else OrderStatus.OPEN
            return OrderRow(signed, seq, live.remaining, status)
        self._rows.pop(signed.hash, None)
        heappush(self._terminal, (signed.order.expiry_ms, signed.hash))
        if reason is None:
            status = OrderStatus.FILLED
        elif reason == CancelReason.EXPIRED:
            status = OrderStatus.EXPIRED
        else:
            status = OrderStatus.CANCELLED
        return OrderRow(signed, self._next_seq(), 0, status)

    async def _persist(
        self, orders: Iterable[SignedOrder], reasons: dict[bytes, str], now: int
    ) -> None:
        rows = [self._row(signed, reasons.get(signed.hash)) for signed in orders]
        # terminal rows first: a seq handed to an in-place amend is freed before it is reused
        rows.sort(key=lambda row: row.status in LIVE)
        await self.store.write(rows, now)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- recovery -------------------------------------------------------------------

    async def recover(self, at_ms: int | None = None) -> int:
        """Rebuild the book from the rows and the replica's fills; returns live orders restored.

        The replica must have caught up with the sequencer's log first.
        """
        async with self.lock:
            now = now_ms() if at_ms is None else at_ms
            rows, self._seq = await self.store.load()
            state = self.state()
            live: list[OpenOrder] = []
            seen: list[tuple[int, bytes]] = []
            finished: list[OrderRow] = []
            self._rows.clear()
            self._terminal.clear()
            for row in rows:
                signed = row.signed
                expiry = signed.order.expiry_ms
                if expiry >= now:
                    seen.append((expiry, signed.hash))
                if row.status not in LIVE:
                    heappush(self._terminal, (expiry, signed.hash))
                    continue
                remaining = min(row.remaining, signed.order.size - state.filled(signed.hash))
                if remaining <= 0 or expiry < now:
                    status = OrderStatus.FILLED if remaining <= 0 else OrderStatus.EXPIRED
                    finished.append(OrderRow(signed, row.seq, 0, status))
                    heappush(self._terminal, (expiry, signed.hash))
                    continue
                live.append(OpenOrder(signed, remaining, row.status == OrderStatus.PENDING))
                self._rows[signed.hash] = row.seq
            snapshot = EngineSnapshot(tuple(live), tuple(sorted(seen)), now)
            self.engine = MatchingEngine.restore(snapshot, self.markets)
            repaired = [
                OrderRow(o.order, self._rows[o.order.hash], o.remaining, _live_status(o))
                for o in live
            ]
            await self.store.write(finished + repaired, now)
            return len(live)


def _in_place(old: OpenOrder, new: SignedOrder) -> bool:
    """Did the engine amend in place, keeping time priority? (its rule, see MatchingEngine.amend)"""
    order = new.order
    return (
        not old.pending
        and order.kind == OrderKind.LIMIT
        and order.tif in (TimeInForce.GTT, TimeInForce.POST_ONLY)
        and order.price == old.order.order.price
        and order.size <= old.remaining
    )


def _live_status(live: OpenOrder) -> OrderStatus:
    return OrderStatus.PENDING if live.pending else OrderStatus.OPEN
