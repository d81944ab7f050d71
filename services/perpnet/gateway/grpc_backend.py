"""The gateway's ports over the running services: matcher and sequencer over gRPC,
trades from the matcher's stream, accounts from the sequencer's committed-tx log in Redis,
orders and records from the services' databases.

A service's refusal ("CODE: reason" in an INVALID_ARGUMENT/FAILED_PRECONDITION
status) comes back as the same CoreError the core raised, so it maps to the
same HTTP status as a refusal by the gateway itself; a service that is down is
503 UNAVAILABLE, anything else 502 UPSTREAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from perpnet.core.encoding import decode_account, decode_tx, encode_order, encode_tx
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import MarketSet
from perpnet.core.orders import SignedOrder
from perpnet.core.txs import Tx
from perpnet.core.typed_data import Domain
from perpnet.gateway.errors import ApiError, from_upstream, unavailable
from perpnet.gateway.feeds import publish_accounts
from perpnet.gateway.ports import (
    AccountView,
    BookView,
    CancelView,
    FillView,
    OrderAck,
    OrderView,
    Publisher,
    StateView,
    TradeView,
    decode_globals,
)
from perpnet.gateway.records import DatabaseRecords
from perpnet.gateway.schemas import MAX_BATCH_ORDERS, BookOut, TradeOut, jsonable
from perpnet.gateway.settings import GatewaySettings
from perpnet.gateway.streams import Hub, account_topic, book_topic, trades_topic
from perpnet.proto.v1 import matcher_pb2 as mpb
from perpnet.proto.v1 import matcher_pb2_grpc, sequencer_pb2_grpc
from perpnet.proto.v1 import sequencer_pb2 as spb
from perpnet.runtime import redis as rt_redis
from perpnet.runtime import topics
from perpnet.runtime.channels import is_serving, open_channel
from perpnet.runtime.follower import MAX_RESTAMPS, restamped

T = TypeVar("T")
ACCOUNT_PREFIX = account_topic(b"")  # every account's topic starts with it
ACCOUNT_IDLE_S = 0.25
log = logging.getLogger("perpnet.gateway")
DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def call(rpc: Awaitable[T], service: str) -> T:
    """Await an RPC; turn its failure into the refusal or outage it stands for."""
    try:
        return await rpc
    except grpc.aio.AioRpcError as exc:
        details = exc.details() or ""
        refused = from_upstream(details)
        if refused is not None:
            raise refused from None
        if exc.code() in DOWN:
            raise unavailable(service) from None
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise ApiError(404, "NOT_FOUND", details) from None
        raise ApiError(502, "UPSTREAM", f"{service}: {exc.code().name}: {details}") from None


def _fill(f: mpb.Fill) -> FillView:
    return FillView(f.maker_hash, f.taker_hash, int(f.size), int(f.price))


def _ack(r: mpb.OrderResult) -> OrderAck:
    return OrderAck(
        r.order_hash,
        tuple(_fill(f) for f in r.fills),
        int(r.resting or 0),
        r.pending,
        tuple(CancelView(c.order_hash, int(c.size), c.reason) for c in r.cancelled),
    )


def _outcome(o: mpb.PlaceOrderOutcome) -> OrderAck | Exception:
    if o.HasField("result"):
        return _ack(o.result)
    refused = from_upstream(o.refused.message)
    return refused or ApiError(502, "UPSTREAM", f"matcher: {o.refused.message}")


def _signed(order: SignedOrder) -> mpb.SignedOrder:
    return mpb.SignedOrder(order=encode_order(order.order), signature=order.signature)


_Waiting = tuple[SignedOrder, "asyncio.Future[OrderAck | Exception]"]


class Coalescer:
    """Orders placed one by one but at the same time travel together in PlaceOrders calls.

    At most `in_flight` calls run at once; each takes every order queued when it
    starts (up to `limit`), in arrival order. A lone order goes at once, so this
    adds no wait when idle; under load it spares the matcher and the gateway an
    RPC per order (the matcher batches its work anyway). An order's answer is
    exactly what PlaceOrder would have given it.
    """

    def __init__(
        self,
        send: Callable[[list[SignedOrder]], Awaitable[list[OrderAck | Exception]]],
        limit: int,
        in_flight: int = 2,
    ) -> None:
        self.send = send
        self.limit = limit
        self.in_flight = in_flight
        self._queue: list[_Waiting] = []
        self._calls: set[asyncio.Task[None]] = set()  # running ones (a task needs a reference)
        self._running = 0

    async def place(self, order: SignedOrder) -> OrderAck:
        answer: asyncio.Future[OrderAck | Exception] = asyncio.get_running_loop().create_future()
        self._queue.append((order, answer))
        self._start()
        outcome = await answer
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _start(self) -> None:
        while self._queue and self._running < self.in_flight:
            batch = self._queue[: self.limit]
            del self._queue[: self.limit]
            self._running += 1
            task = asyncio.create_task(self._call(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[_Waiting]) -> None:
        outcomes: Sequence[OrderAck | Exception]
        try:
            outcomes = await self.send([order for order, _ in batch])
        except Exception as exc:  # the call failed (matcher down): so did every order in it
            outcomes = [exc] * len(batch)
        finally:
            self._running -= 1
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if not answer.done():
                answer.set_result(outcome)
        self._start()


class GrpcMatcher:
    def __init__(self, channel: grpc.aio.Channel, records: DatabaseRecords, timeout: float) -> None:
        self.stub = matcher_pb2_grpc.MatcherStub(channel)  # type: ignore[no-untyped-call]
        self.records = records
        self.timeout = timeout
        self.coalescer = Coalescer(self.place_many, MAX_BATCH_ORDERS)

    async def place(self, order: SignedOrder) -> OrderAck:
        return await self.coalescer.place(order)

    async def place_many(self, orders: Sequence[SignedOrder]) -> list[OrderAck | Exception]:
        request = mpb.PlaceOrdersRequest(orders=[_signed(o) for o in orders])
        reply = await call(self.stub.PlaceOrders(request, timeout=self.timeout), "matcher")
        return [_outcome(o) for o in reply.outcomes]

    async def amend(self, old_hash: bytes, order: SignedOrder) -> OrderAck:
        request = mpb.AmendOrderRequest(old_hash=old_hash, order=_signed(order))
        return _ack(await call(self.stub.AmendOrder(request, timeout=self.timeout), "matcher"))

    async def cancel(self, order_hash: bytes, owner: bytes) -> CancelView:
        request = mpb.CancelOrderRequest(order_hash=order_hash, owner=owner)
        reply = await call(self.stub.CancelOrder(request, timeout=self.timeout), "matcher")
        c = reply.cancelled
        return CancelView(c.order_hash, int(c.size or 0), c.reason)

    async def book(self, market_id: int, levels: int) -> BookView:
        request = mpb.GetBookRequest(market_id=market_id, levels=levels)
        b = await call(self.stub.GetBook(request, timeout=self.timeout), "matcher")
        return BookView(
            b.market_id,
            tuple((int(lv.price), int(lv.size)) for lv in b.bids),
            tuple((int(lv.price), int(lv.size)) for lv in b.asks),
            b.timestamp_ms,
        )

    async def open_orders(self, owner: bytes) -> Sequence[OrderView]:
        return await self.records.open_orders(owner)

    async def order(self, order_hash: bytes) -> OrderView | None:
        return await self.records.order(order_hash)


class GrpcSequencer:
    def __init__(self, channel: grpc.aio.Channel, markets: MarketSet, timeout: float) -> None:
        self.stub = sequencer_pb2_grpc.SequencerStub(channel)  # type: ignore[no-untyped-call]
        self.markets = markets
        self.timeout = timeout

    async def submit(self, tx: Tx) -> tuple[int, bytes]:
        """Submit `tx`, stamped by the gateway. Another submitter's later stamp may get in
        first, and the sequencer then refuses it as CLOCK (nothing applied): it is restamped
        and sent again, as `submit_stamped` does; only a repeated CLOCK reaches the client.
        """
        for _ in range(MAX_RESTAMPS - 1):
            try:
                return await self._submit_once(tx)
            except CoreError as exc:
                if exc.code != ErrorCode.CLOCK:
                    raise
            tx = restamped(tx)
        return await self._submit_once(tx)

    async def _submit_once(self, tx: Tx) -> tuple[int, bytes]:
        request = spb.SubmitTxRequest(tx=encode_tx(tx))
        reply = await call(self.stub.SubmitTx(request, timeout=self.timeout), "sequencer")
        return reply.seq, reply.tx_hash

    async def summary(self) -> StateView:
        s = await call(self.stub.GetState(spb.GetStateRequest(), timeout=self.timeout), "sequencer")
        return decode_globals(
            s.globals, root=s.root, last_seq=s.last_seq, next_batch_id=s.next_batch_id,
            markets=self.markets,
        )  # fmt: skip

    async def _account(self, request: spb.GetAccountRequest) -> AccountView:
        a = await call(self.stub.GetAccount(request, timeout=self.timeout), "sequencer")
        return AccountView(
            decode_account(a.account_id, a.account), a.account, a.root, tuple(a.proof)
        )

    async def account(self, account_id: int) -> AccountView:
        return await self._account(spb.GetAccountRequest(account_id=account_id))

    async def account_of(self, owner: bytes, subaccount: int) -> AccountView:
        key = spb.OwnerKey(owner=owner, subaccount=subaccount)
        return await self._account(spb.GetAccountRequest(owner=key))


class GrpcBackend:
    """Matcher, sequencer and records of a running stack, and the feeds of the streams."""

    def __init__(self, settings: GatewaySettings, markets: MarketSet | None = None) -> None:
        self.settings = settings
        self.markets = markets or MarketSet()
        self.domain: Domain = settings.domain()
        self.records = DatabaseRecords(
            {s: settings.database_of(s) for s in ("matcher", "sequencer", "bridge")}, self.domain
        )
        self._matcher_channel = open_channel(settings.peer("matcher"))
        self._sequencer_channel = open_channel(settings.peer("sequencer"))
        timeout = settings.rpc_timeout_s
        self.matcher = GrpcMatcher(self._matcher_channel, self.records, timeout)
        self.sequencer = GrpcSequencer(self._sequencer_channel, self.markets, timeout)
        self.redis: aioredis.Redis = rt_redis.connect(settings.redis_url)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, hub: Publisher) -> None:
        assert isinstance(hub, Hub)
        for feed in (self._trades, self._books, self._accounts):
            self._tasks.append(asyncio.create_task(_forever(feed, hub)))

    async def ready(self) -> bool:
        checks = await asyncio.gather(
            is_serving(self._matcher_channel),
            is_serving(self._sequencer_channel),
            rt_redis.ping(self.redis),
        )
        return all(checks)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._matcher_channel.close(None)
        await self._sequencer_channel.close(None)
        await self.redis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.records.close)

    async def _trades(self, hub: Hub) -> None:
        """The matcher's trade stream, republished per market."""
        stream = self.matcher.stub.StreamTrades(mpb.StreamTradesRequest())
        async for event in stream:
            view = TradeView(event.market_id, _fill(event.fill), event.taker_is_buy,
                             event.timestamp_ms)  # fmt: skip
            hub.publish(trades_topic(event.market_id), jsonable(TradeOut.of(view)))

    async def _books(self, hub: Hub) -> None:
        """Poll the books somebody watches; publish each one that changed."""
        last: dict[int, Any] = {}
        while True:
            await asyncio.sleep(self.settings.book_interval_s)
            for m in self.markets.markets:
                if book_topic(m.market_id) not in hub.topics():
                    last.pop(m.market_id, None)
                    continue
                book = await self.matcher.book(m.market_id, self.settings.book_levels)
                levels = (book.bids, book.asks)
                if last.get(m.market_id) != levels:
                    last[m.market_id] = levels
                    hub.publish(book_topic(m.market_id), jsonable(BookOut.of(book)))

    async def _accounts(self, hub: Hub) -> None:
        """Tail the committed-tx log; send new account states to their listeners.

        While nobody listens to an account, only the log's last id is kept, every
        ACCOUNT_IDLE_S, instead of reading every transaction; a listener who arrives
        is served from the last id kept before it came, so it misses nothing."""

        def idle() -> bool:
            return not any(t.startswith(ACCOUNT_PREFIX) for t in hub.topics())

        cursor = "$"
        while True:
            if idle():
                last: Any = await self.redis.xrevrange(topics.TXLOG, count=1)
                if idle():  # still: whoever comes next comes after this id
                    cursor = last[0][0] if last else "0-0"
                    await asyncio.sleep(ACCOUNT_IDLE_S)
                    continue
            reply: Any = await self.redis.xread({topics.TXLOG: cursor}, count=100, block=1000)
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    cursor = entry_id
                    if idle():
                        continue
                    try:
                        tx = decode_tx(fields[b"tx"], self.domain)
                    except (CoreError, KeyError):
                        log.warning("undecodable txlog entry", extra={"id": entry_id})
                        continue
                    await publish_accounts(hub, self.sequencer, self.markets, tx, hub.topics())


async def _forever(feed: Callable[[Hub], Awaitable[None]], hub: Hub) -> None:
    """Run a feed; when its upstream fails, log once per outage and start it again."""
    failing = False
    while True:
        try:
            await feed(hub)
            failing = False
        except (grpc.aio.AioRpcError, ApiError, CoreError, RedisError, OSError) as exc:
            if not failing:
                log.warning(
                    "stream feed failed; retrying",
                    extra={"feed": getattr(feed, "__name__", "feed"), "error": str(exc)},
                )
            failing = True
        await asyncio.sleep(1.0)
