"""The REST API's request and response bodies (pydantic), and their conversions.

Conventions: integers that can pass 2**53 (quantums, prices, u64 nonces and
expiries) travel as decimal strings; addresses, hashes and signatures as
0x-hex; enums by name. Requests forbid unknown fields and take no floats, so
every malformed body is refused before anything else looks at it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    WithJsonSchema,
)

from perpnet.core import margin
from perpnet.core.accounts import Account
from perpnet.core.errors import CoreError
from perpnet.core.markets import Market, MarketSet
from perpnet.core.orders import Order, OrderKind, SelfTrade, SignedOrder, TimeInForce
from perpnet.core.txs import Transfer, Withdraw
from perpnet.gateway.ports import (
    AccountView,
    BookView,
    CancelView,
    FillView,
    OrderAck,
    OrderView,
    StateView,
    TradeView,
)
from perpnet.gateway.signing import SignedCancel

E = TypeVar("E", bound=IntEnum)


def hex0x(value: bytes) -> str:
    return "0x" + value.hex()


def _hex(size: int) -> Callable[[Any], bytes]:
    def parse(value: Any) -> bytes:
        if isinstance(value, bytes) and len(value) == size:
            return value  # built in Python from a core object
        if not isinstance(value, str) or not value.startswith("0x"):
            raise ValueError(f"must be 0x-prefixed hex of {size} bytes")
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError("not hex") from None
        if len(raw) != size:
            raise ValueError(f"must be {size} bytes, got {len(raw)}")
        return raw

    return parse


def _uint(bits: int, *, text: bool) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.isdecimal() and value.isascii():
            number = int(value)
        elif type(value) is int:
            number = value
        else:
            raise ValueError("must be a decimal string" if text else "must be an integer")
        if not 0 <= number < 1 << bits:
            raise ValueError(f"out of range for uint{bits}")
        return number

    return parse


def _enum(enum: type[E]) -> Callable[[Any], E]:
    def parse(value: Any) -> E:
        if isinstance(value, str) and value in enum.__members__:
            return enum[value]
        raise ValueError(f"must be one of {', '.join(enum.__members__)}")

    return parse


def _hex_schema(size: int, what: str) -> WithJsonSchema:
    pattern = f"^0x[0-9a-fA-F]{{{2 * size}}}$"
    return WithJsonSchema({"type": "string", "pattern": pattern, "description": what})


def _big_schema(bits: int) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": "^[0-9]+$", "description": f"uint{bits}, decimal"}
    )


def _small_schema(bits: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": 0, "maximum": (1 << bits) - 1})


def _names_schema(enum: type[IntEnum]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(enum.__members__)})


_HEX_OUT = PlainSerializer(hex0x, return_type=str)
_DEC_OUT = PlainSerializer(str, return_type=str)
_NAME_OUT = PlainSerializer(lambda v: v.name, return_type=str)

Address: TypeAlias = Annotated[
    bytes, BeforeValidator(_hex(20)), _HEX_OUT, _hex_schema(20, "20-byte address")
]
Hash: TypeAlias = Annotated[
    bytes, BeforeValidator(_hex(32)), _HEX_OUT, _hex_schema(32, "32-byte hash")
]
Signature: TypeAlias = Annotated[
    bytes,
    BeforeValidator(_hex(65)),
    _HEX_OUT,
    _hex_schema(65, "65-byte secp256k1 signature r||s||v, v in 27/28"),
]
U128: TypeAlias = Annotated[int, BeforeValidator(_uint(128, text=True)), _DEC_OUT, _big_schema(128)]
U64: TypeAlias = Annotated[int, BeforeValidator(_uint(64, text=True)), _DEC_OUT, _big_schema(64)]
I128: TypeAlias = Annotated[
    int,
    _DEC_OUT,
    WithJsonSchema({"type": "string", "pattern": "^-?[0-9]+$", "description": "signed, decimal"}),
]
U32: TypeAlias = Annotated[int, BeforeValidator(_uint(32, text=False)), _small_schema(32)]
U16: TypeAlias = Annotated[int, BeforeValidator(_uint(16, text=False)), _small_schema(16)]
Kind: TypeAlias = Annotated[
    OrderKind, BeforeValidator(_enum(OrderKind)), _NAME_OUT, _names_schema(OrderKind)
]
Tif: TypeAlias = Annotated[
    TimeInForce, BeforeValidator(_enum(TimeInForce)), _NAME_OUT, _names_schema(TimeInForce)
]
Stp: TypeAlias = Annotated[
    SelfTrade, BeforeValidator(_enum(SelfTrade)), _NAME_OUT, _names_schema(SelfTrade)
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- requests


class OrderFields(Request):
    """The EIP-712 `Order` fields, as signed (expiry in ms)."""

    owner: Address
    subaccount: U32 = 0
    market: U16
    is_buy: StrictBool
    size: U128
    price: U128
    kind: Kind = OrderKind.LIMIT
    time_in_force: Tif = TimeInForce.GTT
    trigger_price: U128 = 0
    reduce_only: StrictBool = False
    self_trade: Stp = SelfTrade.CANCEL_MAKER
    nonce: U64
    expiry: U64

    def to_order(self) -> Order:
        return Order(
            self.owner, self.subaccount, self.market, self.is_buy, self.size, self.price,
            self.kind, self.time_in_force, self.trigger_price, self.reduce_only, self.self_trade,
            self.nonce, self.expiry,
        )  # fmt: skip

    @classmethod
    def of(cls, order: Order) -> dict[str, Any]:
        """The JSON fields of a core order (what a client posts, minus the signature)."""
        return {
            "owner": hex0x(order.owner),
            "subaccount": order.subaccount,
            "market": order.market_id,
            "is_buy": order.is_buy,
            "size": str(order.size),
            "price": str(order.price),
            "kind": order.kind.name,
            "time_in_force": order.tif.name,
            "trigger_price": str(order.trigger_price),
            "reduce_only": order.reduce_only,
            "self_trade": order.self_trade.name,
            "nonce": str(order.nonce),
            "expiry": str(order.expiry_ms),
        }


class PlaceOrder(OrderFields):
    signature: Signature


MAX_BATCH_ORDERS = 100


class PlaceOrders(Request):
    """Up to 100 (MAX_BATCH_ORDERS) signed orders, placed in the order given.

    The items are checked one by one (each is a `PlaceOrder`), so a malformed
    one is refused on its own instead of failing the whole request.
    """

    orders: Annotated[
        list[dict[str, Any]],
        Field(min_length=1, max_length=MAX_BATCH_ORDERS),
        WithJsonSchema(
            {
                "type": "array",
                "items": {"$ref": "#/components/schemas/PlaceOrder"},
                "minItems": 1,
                "maxItems": MAX_BATCH_ORDERS,
            }
        ),
    ]


class CancelOrder(Request):
    """A signed `Cancel(owner, orderHash, expiry)`; the order hash is in the path."""

    owner: Address
    expiry: U64
    signature: Signature

    def to_cancel(self, order_hash: bytes) -> SignedCancel:
        return SignedCancel(self.owner, order_hash, self.expiry, self.signature)


class WithdrawRequest(Request):
    """The EIP-712 `Withdraw` fields and signature."""

    owner: Address
    subaccount: U32 = 0
    amount: U128
    recipient: Address
    nonce: U64
    expiry: U64
    signature: Signature

    def to_tx(self, now_ms: int) -> Withdraw:
        return Withdraw(
            now_ms, self.owner, self.subaccount, self.amount, self.recipient, self.nonce,
            self.expiry, self.signature,
        )  # fmt: skip


class TransferRequest(Request):
    """The EIP-712 `Transfer` fields and signature."""

    owner: Address
    subaccount: U32 = 0
    to_owner: Address
    to_subaccount: U32 = 0
    amount: U128
    nonce: U64
    expiry: U64
    signature: Signature

    def to_tx(self, now_ms: int) -> Transfer:
        return Transfer(
            now_ms, self.owner, self.subaccount, self.to_owner, self.to_subaccount, self.amount,
            self.nonce, self.expiry, self.signature,
        )  # fmt: skip


# ---------------------------------------------------------------- responses


class DomainOut(BaseModel):
    name: str
    version: str
    chain_id: int
    verifying_contract: Address
    types: dict[str, str] = Field(description="EIP-712 type strings of every signed request")


class TierOut(BaseModel):
    up_to: U128 | None
    initial_ppm: int
    maintenance_ppm: int


class MarketOut(BaseModel):
    market_id: int
    symbol: str
    atomic_resolution: int
    step_size: U128
    tick_size: U128
    min_order_size: U128
    maker_fee_ppm: int
    taker_fee_ppm: int
    tiers: list[TierOut]

    @classmethod
    def of(cls, m: Market) -> MarketOut:
        tiers = [
            TierOut(up_to=t.up_to, initial_ppm=t.initial_ppm, maintenance_ppm=t.maintenance_ppm)
            for t in m.tiers
        ]
        return cls(
            market_id=m.market_id, symbol=m.symbol, atomic_resolution=m.atomic_resolution,
            step_size=m.step_size, tick_size=m.tick_size, min_order_size=m.min_order_size,
            maker_fee_ppm=m.maker_fee_ppm, taker_fee_ppm=m.taker_fee_ppm, tiers=tiers,
        )  # fmt: skip


class LevelOut(BaseModel):
    price: U128
    size: U128


class BookOut(BaseModel):
    market_id: int
    bids: list[LevelOut]
    asks: list[LevelOut]
    timestamp_ms: int

    @classmethod
    def of(cls, book: BookView) -> BookOut:
        def levels(side: tuple[tuple[int, int], ...]) -> list[LevelOut]:
            return [LevelOut(price=p, size=s) for p, s in side]

        return cls(
            market_id=book.market_id,
            bids=levels(book.bids),
            asks=levels(book.asks),
            timestamp_ms=book.timestamp_ms,
        )


class PriceOut(BaseModel):
    market_id: int
    price: U128 | None = Field(description="null until the first oracle tick")
    timestamp_ms: int


class FundingOut(BaseModel):
    market_id: int
    funding_index: I128 = Field(description="collateral quantums per step-sized lot")
    last_funding_ms: int


class FillOut(BaseModel):
    maker_hash: Hash
    taker_hash: Hash
    size: U128
    price: U128

    @classmethod
    def of(cls, f: FillView) -> FillOut:
        return cls(maker_hash=f.maker_hash, taker_hash=f.taker_hash, size=f.size, price=f.price)


class CancelledOut(BaseModel):
    order_hash: Hash
    size: U128
    reason: str

    @classmethod
    def of(cls, c: CancelView) -> CancelledOut:
        return cls(order_hash=c.order_hash, size=c.size, reason=c.reason)


class OrderAckOut(BaseModel):
    order_hash: Hash
    fills: list[FillOut]
    resting: U128
    pending: bool
    cancelled: list[CancelledOut]

    @classmethod
    def of(cls, ack: OrderAck) -> OrderAckOut:
        return cls(
            order_hash=ack.order_hash,
            fills=[FillOut.of(f) for f in ack.fills],
            resting=ack.resting,
            pending=ack.pending,
            cancelled=[CancelledOut.of(c) for c in ack.cancelled],
        )


class TradeOut(BaseModel):
    market_id: int
    fill: FillOut
    taker_is_buy: bool
    timestamp_ms: int

    @classmethod
    def of(cls, t: TradeView) -> TradeOut:
        return cls(
            market_id=t.market_id,
            fill=FillOut.of(t.fill),
            taker_is_buy=t.taker_is_buy,
            timestamp_ms=t.timestamp_ms,
        )


class OrderOut(BaseModel):
    order_hash: Hash
    order: dict[str, Any] = Field(description="the signed Order fields")
    signature: Signature
    remaining: U128
    status: str
    pending: bool

    @classmethod
    def of(cls, view: OrderView) -> OrderOut:
        signed: SignedOrder = view.signed
        return cls(
            order_hash=signed.hash,
            order=OrderFields.of(signed.order),
            signature=signed.signature,
            remaining=view.remaining,
            status=view.status.value,
            pending=view.pending,
        )


class PositionOut(BaseModel):
    market_id: int
    size: I128 = Field(description="signed: positive long, negative short")
    funding_index: I128
    cost: I128


class RiskOut(BaseModel):
    value: I128
    initial: I128
    maintenance: I128
    free_collateral: I128
    liquidatable: bool


class BalanceOut(BaseModel):
    account_id: int
    collateral: I128
    free_collateral: I128 | None = Field(description="null while a held market has no price")


class AccountOut(BaseModel):
    account_id: int
    owner: Address
    subaccount: int
    collateral: I128
    nonce: U64
    positions: list[PositionOut]
    risk: RiskOut | None = Field(description="null while a held market has no price")
    root: Hash

    @classmethod
    def of(cls, a: Account, risk: RiskOut | None, root: bytes) -> AccountOut:
        return cls(
            account_id=a.account_id, owner=a.owner, subaccount=a.subaccount,
            collateral=a.collateral, nonce=a.nonce, positions=positions_of(a), risk=risk,
            root=root,
        )  # fmt: skip


def positions_of(a: Account) -> list[PositionOut]:
    return [
        PositionOut(market_id=m, size=p.size, funding_index=p.funding_index, cost=p.cost)
        for m, p in sorted(a.positions.items())
        if p.size
    ]


class ProofOut(BaseModel):
    account_id: int
    leaf: str = Field(description="0x-hex encode_account leaf")
    root: Hash
    siblings: list[Hash]


class SubmittedOut(BaseModel):
    seq: U64
    tx_hash: Hash


class StateOut(BaseModel):
    root: Hash
    last_seq: U64
    next_batch_id: U64
    clock_ms: int
    total_deposited: U128
    total_withdrawn: U128


class StageOut(BaseModel):
    name: str
    at_ms: int


class BatchOut(BaseModel):
    batch_id: int
    status: str
    old_root: Hash
    new_root: Hash
    first_seq: int
    last_seq: int
    stages: list[StageOut]
    l1_tx: Hash | None


class BatchProofOut(BaseModel):
    batch_id: int
    prover_id: str
    proof_bytes: int
    wait_ms: int
    prove_ms: int
    created_ms: int
    proof: str | None = Field(description="0x-hex, when asked for with ?include=proof")


class DepositOut(BaseModel):
    l1_id: int
    owner: Address
    subaccount: int
    amount: U128
    status: str
    stages: list[StageOut]
    l1_block: int
    l1_tx: Hash
    batch_id: int | None


class WithdrawalOut(BaseModel):
    id: int
    account: int
    recipient: Address
    amount: U128
    status: str
    stages: list[StageOut]
    batch_id: int | None


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[dict[str, str]] | None = None  # INVALID_FIELD: each field and why


class ErrorOut(BaseModel):
    error: ErrorBody


class PlacedOut(BaseModel):
    """One order of a batch: `status` is what POST /v1/orders would have answered for it,
    with its `ack` (200) or its `error` (4xx/5xx)."""

    status: int
    ack: OrderAckOut | None = None
    error: ErrorBody | None = None


class PlacedBatchOut(BaseModel):
    results: list[PlacedOut] = Field(description="one per posted order, in the same order")


def jsonable(model: BaseModel) -> dict[str, Any]:
    """A response model as the JSON object a WebSocket sends."""
    return model.model_dump(mode="json")


def risk_out(account: Account, state: StateView, markets: MarketSet) -> RiskOut | None:
    """The account's risk at the state's oracle prices; None while a held market has none."""
    try:
        r = margin.risk(account, markets, state.prices, state.funding_indices)
    except CoreError:
        return None
    return RiskOut(
        value=r.value,
        initial=r.initial,
        maintenance=r.maintenance,
        free_collateral=r.free_collateral,
        liquidatable=r.liquidatable,
    )


def account_out(view: AccountView, state: StateView, markets: MarketSet) -> AccountOut:
    return AccountOut.of(view.account, risk_out(view.account, state, markets), view.root)
