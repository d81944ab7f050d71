"""Canonical binary encodings: what the log stores, the prover reads and L1 checks.

Big-endian fixed-width integers, one schema per type, no optional padding:
every value has exactly one encoding, and decoding refuses anything else
(truncation, trailing bytes, out-of-range enums) with ErrorCode.ENCODING.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, NoReturn

from perpnet.core.accounts import Account, Position
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.orders import Order, OrderKind, SelfTrade, SignedOrder, TimeInForce
from perpnet.core.txs import (
    TX_TYPES,
    Deleverage,
    Deposit,
    ForcedWithdrawal,
    FundingTick,
    Liquidate,
    OraclePriceTick,
    SignedPrice,
    Trade,
    Transfer,
    Tx,
    TxType,
    Withdraw,
)
from perpnet.core.typed_data import Domain

_WIDTHS = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "u128": 16, "i64": 8, "i128": 16}
_BYTES = {"addr": 20, "b32": 32, "sig": 65}


class Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def int(self, kind: str, value: int) -> None:
        signed = kind[0] == "i"
        try:
            self.parts.append(int(value).to_bytes(_WIDTHS[kind], "big", signed=signed))
        except OverflowError as exc:
            raise CoreError(ErrorCode.ENCODING, f"{value} does not fit {kind}") from exc

    def raw(self, kind: str, value: bytes) -> None:
        if len(value) != _BYTES[kind]:
            raise CoreError(ErrorCode.ENCODING, f"{kind} must be {_BYTES[kind]} bytes")
        self.parts.append(value)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise CoreError(ErrorCode.ENCODING, "truncated encoding")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def int(self, kind: str) -> int:
        return int.from_bytes(self.take(_WIDTHS[kind]), "big", signed=kind[0] == "i")

    def raw(self, kind: str) -> bytes:
        return self.take(_BYTES[kind])

    def done(self) -> None:
        if self.pos != len(self.data):
            raise CoreError(ErrorCode.ENCODING, f"{len(self.data) - self.pos} trailing bytes")


_ORDER_SCHEMA = (
    ("owner", "addr"),
    ("subaccount", "u32"),
    ("market_id", "u16"),
    ("is_buy", "bool"),
    ("size", "u128"),
    ("price", "u128"),
    ("kind", "enum:kind"),
    ("tif", "enum:tif"),
    ("trigger_price", "u128"),
    ("reduce_only", "bool"),
    ("self_trade", "enum:stp"),
    ("nonce", "u64"),
    ("expiry_ms", "u64"),
)
_PRICE_SCHEMA = (
    ("signer", "addr"),
    ("price", "u128"),
    ("timestamp_ms", "u64"),
    ("signature", "sig"),
)
_ENUMS: dict[str, Any] = {"kind": OrderKind, "tif": TimeInForce, "stp": SelfTrade}
_UNSIGNED = Domain()  # what reading fields without a signature is given (built once: it hashes)

_SCHEMAS: dict[type, tuple[tuple[str, str], ...]] = {
    Deposit: (("timestamp_ms", "u64"), ("deposit_id", "u64"), ("owner", "addr"),
              ("subaccount", "u32"), ("amount", "u128")),
    Withdraw: (("timestamp_ms", "u64"), ("owner", "addr"), ("subaccount", "u32"),
               ("amount", "u128"), ("recipient", "addr"), ("nonce", "u64"),
               ("expiry_ms", "u64"), ("signature", "sig")),
    Transfer: (("timestamp_ms", "u64"), ("owner", "addr"), ("subaccount", "u32"),
               ("to_owner", "addr"), ("to_subaccount", "u32"), ("amount", "u128"),
               ("nonce", "u64"), ("expiry_ms", "u64"), ("signature", "sig")),
    Trade: (("timestamp_ms", "u64"), ("maker", "order"), ("taker", "order"),
            ("size", "u128"), ("price", "u128")),
    OraclePriceTick: (("timestamp_ms", "u64"), ("market_id", "u16"), ("price", "u128"),
                      ("observations", "prices")),
    FundingTick: (("timestamp_ms", "u64"), ("rates", "rates")),
    Liquidate: (("timestamp_ms", "u64"), ("account_id", "u32"), ("market_id", "u16"),
                ("size", "u128"), ("price", "u128"), ("maker", "order?")),
    Deleverage: (("timestamp_ms", "u64"), ("account_id", "u32"),
                 ("offset_account_id", "u32"), ("market_id", "u16"), ("size", "u128")),
    ForcedWithdrawal: (("timestamp_ms", "u64"), ("request_id", "u64"), ("owner", "addr"),
                       ("subaccount", "u32"), ("amount", "u128"), ("recipient", "addr")),
}  # fmt: skip
_BY_TAG = {TX_TYPES[cls]: cls for cls in _SCHEMAS}


def _write(w: Writer, kind: str, value: Any) -> None:
    if kind in _WIDTHS:
        w.int(kind, value)
    elif kind in _BYTES:
        w.raw(kind, value)
    elif kind == "bool":
        w.int("u8", 1 if value else 0)
    elif kind.startswith("enum:"):
        w.int("u8", int(value))
    elif kind == "order":
        _write_fields(w, _ORDER_SCHEMA, value.order)
        w.raw("sig", value.signature)
    elif kind == "order?":
        w.int("u8", 0 if value is None else 1)
        if value is not None:
            _write(w, "order", value)
    elif kind == "prices":
        w.int("u8", len(value))
        for p in value:
            _write_fields(w, _PRICE_SCHEMA, p)
    elif kind == "rates":
        w.int("u8", len(value))
        for market_id, rate in value:
            w.int("u16", market_id)
            w.int("i64", rate)
    else:  # pragma: no cover - schema typo
        raise AssertionError(kind)


def _write_fields(w: Writer, schema: tuple[tuple[str, str], ...], obj: object) -> None:
    for name, kind in schema:
        _write(w, kind, getattr(obj, name))


def _read(r: Reader, kind: str, domain: Domain) -> Any:
    if kind in _WIDTHS:
        return r.int(kind)
    if kind in _BYTES:
        return r.raw(kind)
    if kind == "bool":
        flag = r.int("u8")
        if flag > 1:
            raise CoreError(ErrorCode.ENCODING, "a bool is 0 or 1")
        return flag == 1
    if kind.startswith("enum:"):
        enum = _ENUMS[kind[5:]]
        try:
            return enum(r.int("u8"))
        except ValueError as exc:
            raise CoreError(ErrorCode.ENCODING, f"bad {enum.__name__}") from exc
    if kind == "order":
        order = Order(**_read_fields(r, _ORDER_SCHEMA, domain))
        return SignedOrder.received(order, r.raw("sig"), domain)
    if kind == "order?":
        return _read(r, "order", domain) if _read(r, "bool", domain) else None
    if kind == "prices":
        return tuple(
            SignedPrice(**_read_fields(r, _PRICE_SCHEMA, domain)) for _ in range(r.int("u8"))
        )
    if kind == "rates":
        return tuple((r.int("u16"), r.int("i64")) for _ in range(r.int("u8")))
    raise AssertionError(kind)  # pragma: no cover


def _read_fields(r: Reader, schema: tuple[tuple[str, str], ...], domain: Domain) -> dict[str, Any]:
    return {name: _read(r, kind, domain) for name, kind in schema}


def encode_tx(tx: Tx) -> bytes:
    w = Writer()
    w.int("u8", TX_TYPES[type(tx)])
    _write_fields(w, _SCHEMAS[type(tx)], tx)
    return w.getvalue()


def decode_tx(data: bytes, domain: Domain) -> Tx:
    """Strict inverse of encode_tx; order hashes are recomputed, never read."""
    r = Reader(data)
    try:
        cls = _BY_TAG[TxType(r.int("u8"))]
    except ValueError as exc:
        raise CoreError(ErrorCode.ENCODING, "unknown transaction type") from exc
    tx: Tx = cls(**_read_fields(r, _SCHEMAS[cls], domain))
    r.done()
    return tx


def encode_order(order: Order) -> bytes:
    w = Writer()
    _write_fields(w, _ORDER_SCHEMA, order)
    return w.getvalue()


def decode_order(data: bytes) -> Order:
    """Strict inverse of encode_order (an order as signed, without its signature)."""
    r = Reader(data)
    order = Order(**_read_fields(r, _ORDER_SCHEMA, _UNSIGNED))
    r.done()
    return order


_ACCOUNT_HEAD = (("owner", "addr"), ("subaccount", "u32"), ("collateral", "i128"), ("nonce", "u64"))


def encoded_bytes(*kinds: str) -> int:
    """How many bytes Writer.int / Writer.raw write for these kinds, in all."""
    return sum(_WIDTHS[k] if k in _WIDTHS else _BYTES[k] for k in kinds)


ACCOUNT_HEAD_BYTES = encoded_bytes(*(kind for _, kind in _ACCOUNT_HEAD), "u8")  # + count
POSITION_BYTES = encoded_bytes("u16", "i128", "i128", "i128")


def account_leaf_bytes(positions: int) -> int:
    """len(encode_account(a)) of an account holding `positions` positions."""
    return ACCOUNT_HEAD_BYTES + POSITION_BYTES * positions


def encode_account(account: Account) -> bytes:
    """The account leaf: head, then positions sorted by market (the escape hatch reads it)."""
    w = Writer()
    _write_fields(w, _ACCOUNT_HEAD, account)
    held = sorted((m, p) for m, p in account.positions.items())
    w.int("u8", len(held))
    for market_id, position in held:
        w.int("u16", market_id)
        w.int("i128", position.size)
        w.int("i128", position.funding_index)
        w.int("i128", position.cost)
    return w.getvalue()


def decode_account(account_id: int, data: bytes) -> Account:
    r = Reader(data)
    head = {name: _read(r, kind, _UNSIGNED) for name, kind in _ACCOUNT_HEAD}
    account = Account(account_id, **head)
    previous = -1
    for _ in range(r.int("u8")):
        market_id = r.int("u16")
        if market_id <= previous:
            raise CoreError(
                ErrorCode.ENCODING, "positions must be in strictly ascending market order"
            )
        previous = market_id
        account.positions[market_id] = Position(r.int("i128"), r.int("i128"), r.int("i128"))
    r.done()
    return account


_RANGES = {
    kind: ((-(1 << (8 * n - 1)), 1 << (8 * n - 1)) if kind[0] == "i" else (0, 1 << (8 * n)))
    for kind, n in _WIDTHS.items()
}
Check = Callable[[Any, str], None]


def _refuse(name: str, what: str) -> NoReturn:
    raise CoreError(ErrorCode.INVALID_FIELD, f"{name} must be {what}")


def _int_check(kind: str) -> Check:
    low, high = _RANGES[kind]

    def check(value: Any, name: str) -> None:
        if type(value) is not int or not low <= value < high:
            _refuse(name, f"an integer in {kind}")

    return check


def _bytes_check(size: int) -> Check:
    def check(value: Any, name: str) -> None:
        if type(value) is not bytes or len(value) != size:
            _refuse(name, f"{size} bytes")

    return check


def _type_check(cls: type) -> Check:
    def check(value: Any, name: str) -> None:
        if type(value) is not cls:
            _refuse(name, f"a {cls.__name__}")

    return check


def _tuple_check(item: Check) -> Check:
    def check(value: Any, name: str) -> None:
        if type(value) is not tuple or len(value) > 255:
            _refuse(name, "a tuple of at most 255")
        for element in value:
            item(element, name)

    return check


def _rate_check(value: Any, name: str) -> None:
    if type(value) is not tuple or len(value) != 2:
        _refuse(name, "(market, rate) pairs")
    _CHECKS["u16"](value[0], name)
    _CHECKS["i64"](value[1], name)


def _struct_check(cls: type, schema: tuple[tuple[str, str], ...]) -> Check:
    """One compiled checker per schema: exact type, then every field's kind."""
    names = [name for name, _ in schema]
    checks = [_CHECKS[kind] for _, kind in schema]
    get = attrgetter(*names)

    def check(value: Any, name: str) -> None:
        if type(value) is not cls:
            _refuse(name, f"a {cls.__name__}")
        for field_name, field_check, field in zip(names, checks, get(value), strict=True):
            field_check(field, field_name)

    return check


def _signed_order_check(value: Any, name: str) -> None:
    if type(value) is not SignedOrder:
        _refuse(name, "a signed order")
    _ORDER_CHECK(value.order, name)
    _CHECKS["sig"](value.signature, "signature")
    _CHECKS["b32"](value.hash, "hash")


def _optional_order_check(value: Any, name: str) -> None:
    if value is not None:
        _signed_order_check(value, name)


_CHECKS: dict[str, Check] = {kind: _int_check(kind) for kind in _WIDTHS}
_CHECKS.update({kind: _bytes_check(size) for kind, size in _BYTES.items()})
_CHECKS["bool"] = _type_check(bool)
_CHECKS.update({f"enum:{key}": _type_check(enum) for key, enum in _ENUMS.items()})
_CHECKS["order"] = _signed_order_check
_CHECKS["order?"] = _optional_order_check
_CHECKS["prices"] = _tuple_check(_struct_check(SignedPrice, _PRICE_SCHEMA))
_CHECKS["rates"] = _tuple_check(_rate_check)
_ORDER_CHECK = _struct_check(Order, _ORDER_SCHEMA)
_TX_CHECKS = {cls: _struct_check(cls, schema) for cls, schema in _SCHEMAS.items()}


def check_fields(tx: object) -> None:
    """Exact types and ranges of every field, as its encoding requires, without encoding.

    The state machine calls this first, so a transaction built in Python from
    untrusted input (not decoded from the log) can neither carry a float nor
    a value its leaf or log encoding could not hold.
    """
    check = _TX_CHECKS.get(type(tx))
    if check is None:
        raise CoreError(ErrorCode.INVALID_FIELD, f"not a transaction: {type(tx).__name__}")
    check(tx, type(tx).__name__)
