"""What the gateway needs from the rest of the exchange, whatever carries it.

`Backend` bundles a `Matcher` (orders and books), a `Sequencer` (transactions
and L2 state) and `Records` (the runtime tables). grpc_backend implements them
over the services; local implements them on the core in-process. Values cross
these ports as core objects and the small views below, never as transport
messages, so the REST layer is the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from perpnet.core.accounts import Account
from perpnet.core.markets import MarketSet
from perpnet.core.orders import SignedOrder
from perpnet.core.state import Globals
from perpnet.core.txs import Tx
from perpnet.runtime.models import OrderStatus


@dataclass(frozen=True, slots=True)
class FillView:
    maker_hash: bytes
    taker_hash: bytes
    size: int
    price: int


@dataclass(frozen=True, slots=True)
class CancelView:
    order_hash: bytes
    size: int
    reason: str


@dataclass(frozen=True, slots=True)
class OrderAck:
    """What the matcher did with an order, as it acknowledged it."""

    order_hash: bytes
    fills: tuple[FillView, ...]
    resting: int
    pending: bool
    cancelled: tuple[CancelView, ...]


@dataclass(frozen=True, slots=True)
class BookView:
    market_id: int
    bids: tuple[tuple[int, int], ...]  # (price, size), best first
    asks: tuple[tuple[int, int], ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class TradeView:
    market_id: int
    fill: FillView
    taker_is_buy: bool
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order the exchange holds (or held): the signed order and where it stands."""

    signed: SignedOrder
    remaining: int
    status: OrderStatus
    pending: bool = False


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account leaf as of `root`, with its Merkle path (the escape hatch's input)."""

    account: Account
    leaf: bytes
    root: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MarketGlobals:
    price: int  # 0: no oracle price yet
    price_time_ms: int
    funding_index: int


@dataclass(frozen=True, slots=True)
class StateView:
    """The sequencer's state summary with its globals decoded."""

    root: bytes
    last_seq: int
    next_batch_id: int
    clock_ms: int
    next_deposit_id: int
    last_funding_ms: int
    total_deposited: int
    total_withdrawn: int
    markets: dict[int, MarketGlobals] = field(default_factory=dict)

    @property
    def prices(self) -> dict[int, int]:
        return {m: g.price for m, g in self.markets.items() if g.price}

    @property
    def funding_indices(self) -> dict[int, int]:
        return {m: g.funding_index for m, g in self.markets.items()}


def decode_globals(
    data: bytes, *, root: bytes, last_seq: int, next_batch_id: int, markets: MarketSet
) -> StateView:
    """The sequencer's state summary, its globals read by the core's one decoder."""
    g = Globals.decode(data, markets)
    per_market = {
        m.market_id: MarketGlobals(
            g.prices[m.market_id], g.price_times[m.market_id], g.indices[m.market_id]
        )
        for m in markets.markets
    }
    return StateView(
        root, last_seq, next_batch_id, g.clock_ms, g.next_deposit_id, g.last_funding_ms,
        g.total_deposited, g.total_withdrawn, per_market,
    )  # fmt: skip


class Matcher(Protocol):
    """Orders reach it unverified: it refuses a bad signature (BAD_SIGNATURE) before anything."""

    async def place(self, order: SignedOrder) -> OrderAck: ...

    async def place_many(self, orders: Sequence[SignedOrder]) -> list[OrderAck | Exception]:
        """Each order in turn: its ack, or the CoreError (or ApiError) that refused it."""
        ...

    async def cancel(self, order_hash: bytes, owner: bytes) -> CancelView: ...

    async def amend(self, old_hash: bytes, order: SignedOrder) -> OrderAck: ...

    async def book(self, market_id: int, levels: int) -> BookView: ...

    async def open_orders(self, owner: bytes) -> Sequence[OrderView]: ...

    async def order(self, order_hash: bytes) -> OrderView | None: ...


class Sequencer(Protocol):
    async def submit(self, tx: Tx) -> tuple[int, bytes]:
        """(seq, tx hash) once the transaction is durable; CoreError if refused."""
        ...

    async def summary(self) -> StateView: ...

    async def account(self, account_id: int) -> AccountView: ...

    async def account_of(self, owner: bytes, subaccount: int) -> AccountView: ...


class Records(Protocol):
    """Read-only rows of the runtime tables, as JSON-ready dicts."""

    async def batches(self, limit: int, before: int | None) -> list[dict[str, Any]]: ...

    async def batch(self, batch_id: int) -> dict[str, Any] | None: ...

    async def proof(self, batch_id: int) -> dict[str, Any] | None: ...

    async def deposits(self, owner: bytes | None, limit: int) -> list[dict[str, Any]]: ...

    async def deposit(self, l1_id: int) -> dict[str, Any] | None: ...

    async def withdrawals(self, recipient: bytes | None, limit: int) -> list[dict[str, Any]]: ...

    async def withdrawal(self, withdrawal_id: int) -> dict[str, Any] | None: ...


class Publisher(Protocol):
    """Where backends send stream events (streams.Hub)."""

    def publish(self, topic: str, message: dict[str, Any]) -> None: ...


class Backend(Protocol):
    @property
    def matcher(self) -> Matcher: ...

    @property
    def sequencer(self) -> Sequencer: ...

    @property
    def records(self) -> Records: ...

    @property
    def markets(self) -> MarketSet: ...

    async def start(self, hub: Publisher) -> None:
        """Start feeding stream events into `hub`."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
