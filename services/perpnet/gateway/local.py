"""The gateway's ports on the core, in one process: for tests and demos without the stack.

`LocalExchange` is a matcher and a sequencer at once: the core matching engine
and the core state machine, fills applied as Trade transactions at once.
Refusals are the core's own CoreErrors, so the REST layer's error mapping is
exercised exactly as the services would relay them. It is not durable, cuts no
batches and checks margin only when a fill settles: if the first fill of an
order is refused, the book is restored and the order refused; a later fill
refused leaves the earlier ones settled (the real matcher checks margin first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from perpnet.core.crypto import keccak
from perpnet.core.encoding import encode_tx
from perpnet.core.errors import CoreError, ErrorCode, require
from perpnet.core.matching import EngineSnapshot, MatchingEngine, PlaceResult
from perpnet.core.orders import SignedOrder
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.core.txs import Trade, Tx
from perpnet.gateway.feeds import publish_accounts
from perpnet.gateway.ports import (
    AccountView,
    BookView,
    CancelView,
    FillView,
    OrderAck,
    OrderView,
    Publisher,
    Records,
    StateView,
    TradeView,
    decode_globals,
)
from perpnet.gateway.schemas import BookOut, TradeOut, jsonable
from perpnet.gateway.streams import Hub, book_topic, trades_topic
from perpnet.runtime.clock import now_ms
from perpnet.runtime.models import OrderStatus


class LocalExchange:
    """Matcher and Sequencer ports over one ExchangeState and one MatchingEngine."""

    def __init__(
        self,
        config: ExchangeConfig,
        records: Records,
        clock: Callable[[], int] = now_ms,
        book_levels: int = 20,
    ) -> None:
        self.config = config
        self.markets = config.markets
        self.records = records
        self.state = ExchangeState(config)
        self.engine = MatchingEngine(config.markets)
        self.clock = clock
        self.book_levels = book_levels
        self.last_seq = 0
        self.hub: Hub | None = None
        self.matcher = self
        self.sequencer = self

    # ---------------------------------------------------------------- Backend

    async def start(self, hub: Publisher) -> None:
        assert isinstance(hub, Hub)
        self.hub = hub

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    # ---------------------------------------------------------------- Matcher

    async def place(self, order: SignedOrder) -> OrderAck:
        order.verify()  # as the matcher service does
        self.state.account_of(order.order.owner, order.order.subaccount)  # UNKNOWN_ACCOUNT
        before = self.engine.snapshot()
        now = self.clock()
        result = self.engine.place(order, now, position=self._position(order))
        await self._settle(result, before, now)
        return _ack(result)

    async def place_many(self, orders: Sequence[SignedOrder]) -> list[OrderAck | Exception]:
        acks: list[OrderAck | Exception] = []
        for order in orders:
            try:
                acks.append(await self.place(order))
            except CoreError as exc:
                acks.append(exc)
        return acks

    async def amend(self, old_hash: bytes, order: SignedOrder) -> OrderAck:
        order.verify()
        before = self.engine.snapshot()
        now = self.clock()
        result = self.engine.amend(old_hash, order, now, position=self._position(order))
        await self._settle(result, before, now)
        return _ack(result)

    async def cancel(self, order_hash: bytes, owner: bytes) -> CancelView:
        cancelled = self.engine.cancel(order_hash, owner, self.clock())
        self._publish_book(cancelled.order.order.market_id)
        return CancelView(cancelled.order.hash, cancelled.size, cancelled.reason.value)

    async def book(self, market_id: int, levels: int) -> BookView:
        bids, asks = self.engine.depth(market_id, levels)
        return BookView(market_id, tuple(bids), tuple(asks), self.clock())

    async def open_orders(self, owner: bytes) -> Sequence[OrderView]:
        return [
            OrderView(o.order, o.remaining, OrderStatus.OPEN, o.pending)
            for o in self.engine.open_orders(owner)
        ]

    async def order(self, order_hash: bytes) -> OrderView | None:
        found = self.engine.resting(order_hash)
        if found is None:
            return None
        return OrderView(found.order, found.remaining, OrderStatus.OPEN, found.pending)

    def _position(self, signed: SignedOrder) -> int:
        order = signed.order
        account_id = self.state.account_id(order.owner, order.subaccount)
        return 0 if account_id is None else self.state.account(account_id).size(order.market_id)

    async def _settle(self, result: PlaceResult, before: EngineSnapshot, now: int) -> None:
        market_id = result.order.order.market_id
        for i, fill in enumerate(result.fills):
            trade = Trade(now, fill.maker, fill.taker, fill.size, fill.price)
            try:
                await self.submit(trade)
            except CoreError:
                if i == 0:
                    self.engine = MatchingEngine.restore(before, self.markets)
                    raise
                continue
            view = TradeView(
                market_id, FillView(fill.maker.hash, fill.taker.hash, fill.size, fill.price),
                fill.taker.order.is_buy, now,
            )  # fmt: skip
            if self.hub is not None:
                self.hub.publish(trades_topic(market_id), jsonable(TradeOut.of(view)))
        self._publish_book(market_id)

    def _publish_book(self, market_id: int) -> None:
        if self.hub is not None and book_topic(market_id) in self.hub.topics():
            bids, asks = self.engine.depth(market_id, self.book_levels)
            view = BookView(market_id, tuple(bids), tuple(asks), self.clock())
            self.hub.publish(book_topic(market_id), jsonable(BookOut.of(view)))

    # ---------------------------------------------------------------- Sequencer

    async def submit(self, tx: Tx) -> tuple[int, bytes]:
        self.state.apply(tx)
        self.last_seq += 1
        if self.hub is not None:
            await publish_accounts(self.hub, self, self.markets, tx, self.hub.topics())
        return self.last_seq, keccak(encode_tx(tx))

    async def summary(self) -> StateView:
        return decode_globals(
            self.state.globals_bytes(),
            root=self.state.root(),
            last_seq=self.last_seq,
            next_batch_id=0,
            markets=self.markets,
        )

    async def account(self, account_id: int) -> AccountView:
        leaf, proof = self.state.account_proof(account_id)
        return AccountView(
            self.state.account(account_id), leaf, self.state.account_tree.root(), tuple(proof)
        )

    async def account_of(self, owner: bytes, subaccount: int) -> AccountView:
        account_id = self.state.account_id(owner, subaccount)
        require(account_id is not None, ErrorCode.UNKNOWN_ACCOUNT, f"no account 0x{owner.hex()}")
        assert account_id is not None
        return await self.account(account_id)


def _ack(result: PlaceResult) -> OrderAck:
    return OrderAck(
        result.order.hash,
        tuple(FillView(f.maker.hash, f.taker.hash, f.size, f.price) for f in result.fills),
        result.resting,
        result.pending,
        tuple(CancelView(c.order.hash, c.size, c.reason.value) for c in result.cancelled),
    )
