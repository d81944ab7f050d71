"""The matcher service (gRPC perpnet.v1.Matcher) over perpnet.matcher.desk.

PlaceOrder: strict decode, hash recomputed, signature verified, the
pre-trade margin check (skipped for reduce-only orders), then the desk
matches, submits the fills to the sequencer and persists before replying
(see the desk's docstring for the durability argument and its micro-batches).
The margin check is the margin engine's rule (perpnet.margin.risk.check_order)
run on this service's own replica of committed state, which follows the same
log as the margin engine's: no RPC per order (`margin_remote` asks the margin
engine instead). PlaceOrders does the same for several orders in one call.
Conditional orders fire on the oracle prices of the committed log; expired
orders are dropped on a timer. On start the replica catches up with the sequencer's log and the
book is rebuilt from the database before the service reports SERVING.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import grpc
import grpc.aio
from prometheus_client import Counter, Histogram

from perpnet.core.encoding import decode_signed_order, encode_order, encode_tx
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.events import Event
from perpnet.core.matching import Fill
from perpnet.core.orders import Order, SignedOrder
from perpnet.core.txs import OraclePriceTick, Tx
from perpnet.margin.risk import check_order
from perpnet.matcher.desk import MAX_BATCH_ORDERS, Cancelled, OrderDesk, Outcome, Submitted
from perpnet.matcher.store import OrderStore
from perpnet.proto.v1 import margin_pb2, margin_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from perpnet.runtime.channels import open_channel
from perpnet.runtime.clock import now_ms
from perpnet.runtime.config import Range, Seconds
from perpnet.runtime.db import Database
from perpnet.runtime.follower import (
    ExchangeSettings,
    Follower,
    RefusedError,
    caught_up,
    repeat,
    sequencer_log,
    submit_stamped,
    sync_with_sequencer,
)
from perpnet.runtime.grpc_server import Service
from perpnet.runtime.redis import connect, ping
from perpnet.runtime.sequencer_client import Accepted, Refused, SequencerClient

Context = grpc.aio.ServicerContext[Any, Any]
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
ORDER_ACK = Histogram(
    "perpnet_matcher_order_ack_seconds",
    "Order request to durable acknowledgement (fills committed, rows written), by command.",
    ("command",),
    buckets=_LATENCY,
)
MATCHING = Histogram(
    "perpnet_matcher_matching_seconds",
    "Time the matching engine takes for one order (in memory).",
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01),
)
MARGIN_CHECK = Histogram(
    "perpnet_matcher_margin_check_seconds",
    "The pre-trade margin check of one order (on the replica, or the margin engine's RPC).",
    buckets=_LATENCY,
)
BATCH_ORDERS = Histogram(
    "perpnet_matcher_batch_orders",
    "Orders per micro-batch (matched, committed in one SubmitTxs, written in one transaction).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_STAGE = Histogram(
    "perpnet_matcher_batch_stage_seconds",
    "Time per micro-batch in each stage: submit (SubmitTxs) and write (the rows).",
    ("stage",),
    buckets=_LATENCY,
)
ORDERS = Counter(
    "perpnet_matcher_orders", "Commands by outcome (ok or ErrorCode).", ("command", "outcome")
)
FILLS = Counter(
    "perpnet_matcher_fills", "Fills submitted, by outcome (committed or refused).", ("outcome",)
)
TRIGGERED = Counter("perpnet_matcher_oracle_ticks", "Oracle ticks checked against conditionals.")
EXPIRED = Counter("perpnet_matcher_expired_orders", "Orders dropped at their expiry.")

_INVALID = {
    ErrorCode.ENCODING,
    ErrorCode.INVALID_FIELD,
    ErrorCode.BAD_SIGNATURE,
    ErrorCode.OFF_TICK,
    ErrorCode.OFF_STEP,
    ErrorCode.BELOW_MIN_SIZE,
    ErrorCode.UNKNOWN_MARKET,
}
_STATUS = {
    ErrorCode.UNKNOWN_ORDER: grpc.StatusCode.NOT_FOUND,
    ErrorCode.NOT_OWNER: grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass(frozen=True, kw_only=True)
class MatcherSettings(ExchangeSettings):
    """PERPNET_MATCHER_<FIELD> or PERPNET_<FIELD>."""

    expire_interval_s: Seconds = 1.0
    book_levels: Annotated[int, Range(1, 10_000)] = 20  # GetBook depth when none is asked
    rpc_timeout_s: Seconds = 5.0
    margin_check: bool = True  # check initial margin before accepting an order
    margin_remote: bool = False  # ask the margin engine (an RPC per order), not the replica
    # Orders matched, committed and written together (and the most one PlaceOrders takes).
    max_batch_orders: Annotated[int, Range(1, 10_000)] = MAX_BATCH_ORDERS


def _cancelled(c: Cancelled) -> matcher_pb2.Cancelled:
    return matcher_pb2.Cancelled(order_hash=c.order.hash, size=str(c.size), reason=str(c.reason))


def _fill(f: Fill) -> matcher_pb2.Fill:
    return matcher_pb2.Fill(
        maker_hash=f.maker.hash, taker_hash=f.taker.hash, size=str(f.size), price=str(f.price)
    )


def _result(outcome: Outcome) -> matcher_pb2.OrderResult:
    assert outcome.order is not None
    if outcome.refusal:
        FILLS.labels("refused").inc()
    return matcher_pb2.OrderResult(
        order_hash=outcome.order.hash,
        fills=[_fill(f) for f in outcome.fills],
        resting=str(outcome.resting),
        pending=outcome.pending,
        cancelled=[_cancelled(c) for c in outcome.cancelled],
    )


def _status(exc: CoreError) -> grpc.StatusCode:
    status = _STATUS.get(exc.code)
    if status is None:
        status = (
            grpc.StatusCode.INVALID_ARGUMENT
            if exc.code in _INVALID
            else grpc.StatusCode.FAILED_PRECONDITION
        )
    return status


def _submitted(reply: Accepted | Refused | None) -> Submitted:
    if isinstance(reply, Accepted):
        return reply.seq
    return None if reply is None else RefusedError(reply.code, reply.message)


async def _refuse(context: Context, exc: CoreError) -> NoReturn:
    await context.abort(_status(exc), str(exc))
    raise AssertionError("unreachable")  # abort raises


class MatcherServicer(matcher_pb2_grpc.MatcherServicer):
    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    async def PlaceOrder(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.PlaceOrderRequest, context: Context
    ) -> matcher_pb2.OrderResult:
        [outcome] = await self.matcher.place_many([request.order])
        if isinstance(outcome, CoreError):
            await _refuse(context, outcome)
        return _result(outcome)

    async def PlaceOrders(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.PlaceOrdersRequest, context: Context
    ) -> matcher_pb2.PlaceOrdersReply:
        limit = self.matcher.settings.max_batch_orders
        if len(request.orders) > limit:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{ErrorCode.INVALID_FIELD}: at most {limit} orders in one call",
            )
        reply = matcher_pb2.PlaceOrdersReply()
        for outcome in await self.matcher.place_many(request.orders):
            if isinstance(outcome, CoreError):
                refusal = matcher_pb2.Refusal(status=_status(outcome).name, message=str(outcome))
                reply.outcomes.add(refused=refusal)
            else:
                reply.outcomes.add(result=_result(outcome))
        return reply

    async def AmendOrder(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.AmendOrderRequest, context: Context
    ) -> matcher_pb2.OrderResult:
        started = time.perf_counter()
        try:
            signed = self.matcher.received(request.order)
            outcome = await self.matcher.desk.amend(request.old_hash, signed)
        except CoreError as exc:
            ORDERS.labels("amend", exc.code.value).inc()
            await _refuse(context, exc)
        ORDERS.labels("amend", "ok").inc()
        ORDER_ACK.labels("amend").observe(time.perf_counter() - started)
        return _result(outcome)

    async def CancelOrder(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.CancelOrderRequest, context: Context
    ) -> matcher_pb2.CancelOrderReply:
        started = time.perf_counter()
        try:
            cancel = await self.matcher.desk.cancel(request.order_hash, request.owner)
        except CoreError as exc:
            ORDERS.labels("cancel", exc.code.value).inc()
            await _refuse(context, exc)
        ORDERS.labels("cancel", "ok").inc()
        ORDER_ACK.labels("cancel").observe(time.perf_counter() - started)
        return matcher_pb2.CancelOrderReply(
            cancelled=_cancelled(Cancelled(cancel.order, cancel.size, cancel.reason))
        )

    async def GetBook(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.GetBookRequest, context: Context
    ) -> matcher_pb2.Book:
        levels = request.levels or self.matcher.settings.book_levels
        try:
            bids, asks = self.matcher.desk.engine.depth(request.market_id, levels)
        except CoreError as exc:
            await _refuse(context, exc)
        return matcher_pb2.Book(
            market_id=request.market_id,
            bids=[matcher_pb2.Level(price=str(p), size=str(s)) for p, s in bids],
            asks=[matcher_pb2.Level(price=str(p), size=str(s)) for p, s in asks],
            timestamp_ms=now_ms(),
        )

    async def GetImpactPrices(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.GetImpactPricesRequest, context: Context
    ) -> matcher_pb2.ImpactPrices:
        engine = self.matcher.desk.engine
        try:
            market = self.matcher.config.markets.get(request.market_id)
            notional = int(request.notional) if request.notional else market.impact_notional
            bid, ask = engine.impact_prices(request.market_id, notional)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD: bad notional")
        except CoreError as exc:
            await _refuse(context, exc)
        return matcher_pb2.ImpactPrices(
            market_id=request.market_id,
            impact_bid="" if bid is None else str(bid),
            impact_ask="" if ask is None else str(ask),
            timestamp_ms=now_ms(),
        )

    async def StreamTrades(  # noqa: N802 - the name is the proto's
        self, request: matcher_pb2.StreamTradesRequest, context: Context
    ) -> AsyncIterator[matcher_pb2.TradeEvent]:
        markets = set(request.market_ids)
        queue: asyncio.Queue[matcher_pb2.TradeEvent] = asyncio.Queue(maxsize=10_000)
        self.matcher.subscribers.add(queue)
        stopping = asyncio.create_task(self.matcher.stopping.wait())
        try:
            while True:
                getting = asyncio.create_task(queue.get())
                await asyncio.wait((getting, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    return
                event = getting.result()
                if not markets or event.market_id in markets:
                    yield event
        finally:
            stopping.cancel()
            self.matcher.subscribers.discard(queue)


class Matcher(Service[MatcherSettings]):
    """The matcher: the desk, its replica of committed state, and its peers."""

    def __init__(self, settings: MatcherSettings) -> None:
        super().__init__(settings)
        self.config = settings.exchange_config()
        self.db = Database(settings.database_url)
        self.redis = connect(settings.redis_url)
        self.sequencer = SequencerClient(settings.peer("sequencer"), settings.rpc_timeout_s)
        self.margin_channel = open_channel(settings.peer("margin"))
        self.margin = margin_pb2_grpc.MarginStub(self.margin_channel)  # type: ignore[no-untyped-call]
        self.follower = Follower(
            self.config, self.redis, sequencer_log(self.sequencer), on_tx=self._on_tx
        )
        self.desk = OrderDesk(
            self.config.markets,
            OrderStore(self.db, self.config.domain),
            lambda: self.follower.state,
            lambda tx: submit_stamped(self.sequencer, tx),
            submit_many=self._submit_many,
            max_batch=settings.max_batch_orders,
            on_fill=self._publish,
            check=self.check_margin,
        )
        self.subscribers: set[asyncio.Queue[matcher_pb2.TradeEvent]] = set()
        self.recovered_book = False
        self._ticks: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        matcher_pb2_grpc.add_MatcherServicer_to_server(MatcherServicer(self), server)  # type: ignore[no-untyped-call]
        return ("perpnet.v1.Matcher",)

    async def start(self) -> None:
        self.resources.push_async_callback(self.db.__aexit__, None, None, None)
        self.resources.push_async_callback(self.redis.aclose)
        self.resources.push_async_callback(self.sequencer.close)
        self.resources.push_async_callback(self.margin_channel.close, None)
        await self.db.upgrade()
        self._tasks = [
            asyncio.create_task(self.follower.run(self.stopping)),
            asyncio.create_task(self._recover_then_serve()),
        ]

    async def _recover_then_serve(self) -> None:
        if not await sync_with_sequencer(self.follower, self.sequencer, self.stopping):
            return
        live = await self.desk.recover()
        self.recovered_book = True
        self.log.info("book recovered", extra={"live_orders": live, "seq": self.follower.last_seq})
        await asyncio.gather(
            repeat(self.settings.expire_interval_s, self._expire, self.stopping, "expiry"),
            self._fire_conditionals(),
        )

    async def ready(self) -> bool:
        if not self.recovered_book or self.follower.diverged is not None:
            return False
        return await ping(self.redis) and await self.db.ping() and await self.sequencer.serving()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- order intake ---------------------------------------------------------------

    async def place_many(
        self, messages: Iterable[matcher_pb2.SignedOrder]
    ) -> list[Outcome | CoreError]:
        """Verify each order, then place the ones that pass in the order given (one desk
        micro-batch when nothing else is queued; the desk runs the margin check just before
        placing each, so earlier orders count); an outcome or refusal for each."""
        started = time.perf_counter()
        checked = [self._verified(m) for m in messages]
        placing = [self.desk.queue(s) for s in checked if isinstance(s, SignedOrder)]
        placed = iter(await asyncio.gather(*placing, return_exceptions=True))
        outcomes: list[Outcome | CoreError] = []
        for signed in checked:
            outcome = next(placed) if isinstance(signed, SignedOrder) else signed
            if isinstance(outcome, BaseException) and not isinstance(outcome, CoreError):
                raise outcome
            outcomes.append(outcome)
        labels = (o.code.value if isinstance(o, CoreError) else "ok" for o in outcomes)
        for label, count in collections.Counter(labels).items():
            ORDERS.labels("place", label).inc(count)
        self.observe_matching()
        took = time.perf_counter() - started
        for outcome in outcomes:
            if not isinstance(outcome, CoreError):
                ORDER_ACK.labels("place").observe(took)
        return outcomes

    def _verified(self, message: matcher_pb2.SignedOrder) -> SignedOrder | CoreError:
        try:
            signed = self.received(message)
        except CoreError as exc:
            return exc
        return signed

    async def _submit_many(self, txs: Sequence[Tx]) -> list[Submitted]:
        """SubmitTxs for the desk: seqs, then the first refusal, then None (not applied)."""
        try:
            replies = await self.sequencer.submit_many([encode_tx(tx) for tx in txs])
        except grpc.aio.AioRpcError as exc:
            refused = RefusedError(exc.code().name, exc.details() or "")
            return [refused, *([None] * (len(txs) - 1))]
        return [_submitted(r) for r in replies]

    def received(self, message: matcher_pb2.SignedOrder) -> SignedOrder:
        """Decode strictly, recompute the hash, verify the owner's signature."""
        signed = decode_signed_order(message.order, message.signature, self.config.domain)
        signed.verify()
        return signed

    async def check_margin(self, signed: SignedOrder, exclude: bytes = b"") -> None:
        """The pre-trade margin check (the desk's, under its lock); raises CoreError."""
        order = signed.order
        if order.reduce_only or not self.settings.margin_check:
            return
        with MARGIN_CHECK.time():
            others = self.desk.open_orders(order, exclude)
            if self.settings.margin_remote:
                await self._check_remotely(order, others)
                return
            try:
                verdict = check_order(self.follower.state, order, others)
            except CoreError:
                verdict = None
            if verdict is None or not verdict.ok:
                # the replica may lag the log (a price or deposit just committed): catch
                # up to what the sequencer has committed, then decide on that state
                await self._catch_up_replica()
                verdict = check_order(self.follower.state, order, others)
        if not verdict.ok:
            raise CoreError(ErrorCode(verdict.reason), verdict.message.split(": ", 1)[-1])

    async def _catch_up_replica(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await caught_up(self.follower, self.sequencer, self.settings.rpc_timeout_s)

    async def _check_remotely(self, order: Order, others: list[Order]) -> None:
        request = margin_pb2.CheckOrderRequest(
            order=encode_order(order), open_orders=[encode_order(o) for o in others]
        )
        try:
            reply = await self.margin.CheckOrder(request, timeout=self.settings.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise CoreError(
                ErrorCode.INSUFFICIENT_MARGIN, f"the margin engine cannot check: {exc.code().name}"
            ) from None
        if not reply.ok:
            code = ErrorCode(reply.reason) if reply.reason in ErrorCode.__members__ else None
            message = reply.message.split(": ", 1)[-1] or "refused by the margin engine"
            raise CoreError(code or ErrorCode.INSUFFICIENT_MARGIN, message)

    def observe_matching(self) -> None:
        for seconds in self.desk.match_seconds:
            MATCHING.observe(seconds)
        self.desk.match_seconds.clear()
        for orders, submitting, writing in self.desk.batches:
            BATCH_ORDERS.observe(orders)
            BATCH_STAGE.labels("submit").observe(submitting)
            BATCH_STAGE.labels("write").observe(writing)
        self.desk.batches.clear()

    # -- follow-ups -----------------------------------------------------------------

    def _on_tx(self, seq: int, tx: Tx, events: tuple[Event, ...]) -> None:
        if isinstance(tx, OraclePriceTick) and self.recovered_book:
            self._ticks.put_nowait((tx.market_id, tx.price))

    async def _fire_conditionals(self) -> None:
        while not self.stopping.is_set():
            market_id, price = await self._ticks.get()
            try:
                await self.desk.on_oracle_price(market_id, price)
                TRIGGERED.inc()
            except Exception:
                self.log.exception("conditional orders failed", extra={"market": market_id})

    async def _expire(self) -> None:
        EXPIRED.inc(len(await self.desk.expire()))

    def _publish(self, fill: Fill) -> None:
        FILLS.labels("committed").inc()
        event = matcher_pb2.TradeEvent(
            market_id=fill.maker.order.market_id,
            fill=_fill(fill),
            taker_is_buy=fill.taker.order.is_buy,
            timestamp_ms=now_ms(),
        )
        for queue in list(self.subscribers):
            if queue.full():
                self.subscribers.discard(queue)  # a reader that cannot keep up is dropped
            else:
                queue.put_nowait(event)
