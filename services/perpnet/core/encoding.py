"""Canonical binary encodings: what the log stores, the prover reads and L1 checks.

Big-endian fixed-width integers, one schema per type, no optional padding:
every value has exactly one encoding, and decoding refuses anything else
(truncation, trailing bytes, out-of-range enums) with ErrorCode.ENCODING.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from functools import lru_cache
from itertools import groupby, pairwise
from operator import attrgetter, itemgetter
from typing import Any, NoReturn

from perpnet.core.accounts import Account, Position
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.orders import (
    Order,
    OrderKind,
    SelfTrade,
    SignedOrder,
    TimeInForce,
    typed_digest,
)
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


# Each schema is compiled once into a _Layout: runs of fixed-width fields are one
# struct.Struct each, and only the kinds struct cannot express (128-bit integers,
# bools and enums that must be canonical, lengths that must be exact) get a
# converter. Decoding a trade this way is several times faster than reading it
# field by field, and every service decodes every transaction of the log.

_FORMATS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i64": "q", "u128": "16s",
            "i128": "16s", "addr": "20s", "b32": "32s", "sig": "65s", "bool": "B"}  # fmt: skip
Convert = Callable[[Any], Any]
Step = Callable[[bytes, int, Domain, list[Any]], int]  # (data, pos, domain, out): new pos
Emit = Callable[[list[bytes], Any], None]


def _refuse_encoding(message: str) -> NoReturn:
    raise CoreError(ErrorCode.ENCODING, message)


def _bool(value: int) -> bool:
    if value > 1:
        _refuse_encoding("a bool is 0 or 1")
    return value == 1


def _enum(enum: Any) -> Convert:
    members = {member.value: member for member in enum}

    def convert(value: int) -> Any:
        member = members.get(value)
        if member is None:
            _refuse_encoding(f"bad {enum.__name__}")
        return member

    return convert


def _exact(kind: str) -> Convert:
    size = _BYTES[kind]

    def convert(value: Any) -> Any:
        if type(value) is not bytes or len(value) != size:
            _refuse_encoding(f"{kind} must be {size} bytes")
        return value

    return convert


def _to_int128(kind: str) -> Convert:
    signed = kind[0] == "i"

    def convert(value: Any) -> bytes:
        try:
            return int(value).to_bytes(16, "big", signed=signed)
        except OverflowError:
            _refuse_encoding(f"{value} does not fit {kind}")

    return convert


def _decoder(kind: str) -> Convert | None:
    if kind == "u128":
        return lambda raw: int.from_bytes(raw, "big")
    if kind == "i128":
        return lambda raw: int.from_bytes(raw, "big", signed=True)
    if kind == "bool":
        return _bool
    if kind.startswith("enum:"):
        return _enum(_ENUMS[kind[5:]])
    return None


def _encoder(kind: str) -> Convert | None:
    if kind in ("u128", "i128"):
        return _to_int128(kind)
    if kind in _BYTES:
        return _exact(kind)
    if kind == "bool":
        return lambda value: 1 if value else 0
    if kind.startswith("enum:"):
        return int
    return None


def _struct(kinds: list[str]) -> struct.Struct:
    """The run's struct format (a KeyError at import names a kind no one encodes)."""
    formats = ("B" if kind.startswith("enum:") else _FORMATS[kind] for kind in kinds)
    return struct.Struct(">" + "".join(formats))


def _fixed_bytes(kinds: list[str]) -> int:
    return _struct(kinds).size


def _fixed_step(kinds: list[str]) -> tuple[Step, Emit]:
    """A run of fixed-width fields: one struct unpack or pack, then the converters."""
    layout = _struct(kinds)
    size = layout.size
    unpack = layout.unpack_from
    decoders = [(i, f) for i, k in enumerate(kinds) if (f := _decoder(k)) is not None]
    encoders = [(i, f) for i, k in enumerate(kinds) if (f := _encoder(k)) is not None]

    def read(data: bytes, pos: int, domain: Domain, out: list[Any]) -> int:
        end = pos + size
        if end > len(data):
            _refuse_encoding("truncated encoding")
        if not decoders:
            out.extend(unpack(data, pos))
            return end
        values = list(unpack(data, pos))
        for i, convert in decoders:
            values[i] = convert(values[i])
        out.extend(values)
        return end

    def emit(parts: list[bytes], given: Any) -> None:
        values = list(given)
        for i, convert in encoders:
            values[i] = convert(values[i])
        try:
            parts.append(layout.pack(*values))
        except struct.error:
            for kind, value in zip(kinds, given, strict=True):
                if kind in _WIDTHS and type(value) is int:
                    Writer().int(kind, value)  # raises "... does not fit ..."
            raise CoreError(ErrorCode.ENCODING, f"cannot encode {given!r} as {kinds}") from None

    return read, emit


class _Layout:
    """A schema compiled to steps: decodes to `make(fields, domain)`, encodes `get(obj)`."""

    __slots__ = ("get", "make", "steps")

    def __init__(
        self,
        schema: tuple[tuple[str, str], ...],
        make: Callable[[list[Any], Domain], Any],
        get: Callable[[Any], tuple[Any, ...]] | None = None,
    ) -> None:
        self.make = make
        self.get = get or attrgetter(*(name for name, _ in schema))
        # (read, emit, first field, field count); None: one field of a variable kind
        self.steps: list[tuple[Step, Emit, int, int | None]] = []
        at = 0
        for variable, group in groupby((kind for _, kind in schema), _VARIABLE.__contains__):
            kinds = list(group)
            if variable:
                self.steps.extend((*_VARIABLE[kind], at + i, None) for i, kind in enumerate(kinds))
            else:
                self.steps.append((*_fixed_step(kinds), at, len(kinds)))
            at += len(kinds)

    def read(self, data: bytes, pos: int, domain: Domain, out: list[Any]) -> int:
        """A Step: appends one decoded object."""
        fields: list[Any] = []
        for read, _, _, _ in self.steps:
            pos = read(data, pos, domain, fields)
        out.append(self.make(fields, domain))
        return pos

    def emit(self, parts: list[bytes], obj: Any) -> None:
        """An Emit: one object's fields."""
        values = self.get(obj)
        for _, emit, at, count in self.steps:
            emit(parts, values[at] if count is None else values[at : at + count])

    def decode(self, data: bytes, domain: Domain) -> Any:
        """Exactly one object filling `data`."""
        out: list[Any] = []
        if self.read(data, 0, domain, out) != len(data):
            _refuse_encoding("trailing bytes")
        return out[0]

    def encode(self, obj: Any) -> bytes:
        parts: list[bytes] = []
        self.emit(parts, obj)
        return b"".join(parts)


def _counted(item: _Layout) -> tuple[Step, Emit]:
    """A u8 count, then that many items, as a tuple."""

    def read(data: bytes, pos: int, domain: Domain, out: list[Any]) -> int:
        if pos >= len(data):
            _refuse_encoding("truncated encoding")
        items: list[Any] = []
        count, pos = data[pos], pos + 1
        for _ in range(count):
            pos = item.read(data, pos, domain, items)
        out.append(tuple(items))
        return pos

    def emit(parts: list[bytes], values: Any) -> None:
        if len(values) > 255:
            _refuse_encoding(f"{len(values)} does not fit u8")
        parts.append(bytes([len(values)]))
        for value in values:
            item.emit(parts, value)

    return read, emit


def _optional(item: tuple[Step, Emit]) -> tuple[Step, Emit]:
    """A bool flag, then the item if it is set (None if not)."""
    read_item, emit_item = item

    def read(data: bytes, pos: int, domain: Domain, out: list[Any]) -> int:
        if pos >= len(data):
            _refuse_encoding("truncated encoding")
        if not _bool(data[pos]):
            out.append(None)
            return pos + 1
        return read_item(data, pos + 1, domain, out)

    def emit(parts: list[bytes], value: Any) -> None:
        parts.append(b"\x00" if value is None else b"\x01")
        if value is not None:
            emit_item(parts, value)

    return read, emit


Schema = tuple[tuple[str, str], ...]


def _positional(cls: type, schema: Schema) -> Callable[[list[Any], Domain], Any]:
    """cls(*fields): the schema must list the dataclass's fields in their order."""
    if [f.name for f in dataclasses.fields(cls)] != [name for name, _ in schema]:
        raise AssertionError(f"the {cls.__name__} schema is not its fields, in order")
    return lambda fields, _domain: cls(*fields)


def _signed_order(fields: list[Any], domain: Domain) -> SignedOrder:
    """The hash is recomputed in the reader's domain, never read."""
    order = Order(*fields[:-1])
    return SignedOrder(order, fields[-1], typed_digest(order, domain))


_VARIABLE: dict[str, tuple[Step, Emit]] = {}
_ORDER = _Layout(_ORDER_SCHEMA, _positional(Order, _ORDER_SCHEMA))
_SIGNED_ORDER = _Layout(
    (*_ORDER_SCHEMA, ("signature", "sig")),
    _signed_order,
    lambda signed: (*_ORDER.get(signed.order), signed.signature),
)
SIGNED_ORDER_BYTES = _fixed_bytes([k for _, k in _ORDER_SCHEMA]) + _BYTES["sig"]


@lru_cache(maxsize=1 << 14)
def _cached_signed_order(raw: bytes, domain: Domain) -> SignedOrder:
    """Decoded once per process: a resting order comes back in every trade that fills it,
    and the matcher decodes each order on receipt and again in the log."""
    return _SIGNED_ORDER.decode(raw, domain)  # type: ignore[no-any-return]


def _read_signed_order(data: bytes, pos: int, domain: Domain, out: list[Any]) -> int:
    end = pos + SIGNED_ORDER_BYTES
    if end > len(data):
        _refuse_encoding("truncated encoding")
    out.append(_cached_signed_order(data[pos:end], domain))
    return end


def decode_signed_order(order: bytes, signature: bytes, domain: Domain) -> SignedOrder:
    """encode_order's bytes and a signature, as received: the hash recomputed, not verified."""
    if len(signature) != _BYTES["sig"]:  # refused by verify(), with its own message
        return SignedOrder.received(decode_order(order), signature, domain)
    return _cached_signed_order(order + signature, domain)


_VARIABLE["order"] = (_read_signed_order, _SIGNED_ORDER.emit)
_VARIABLE["order?"] = _optional(_VARIABLE["order"])
_VARIABLE["prices"] = _counted(_Layout(_PRICE_SCHEMA, _positional(SignedPrice, _PRICE_SCHEMA)))
_VARIABLE["rates"] = _counted(
    _Layout((("market_id", "u16"), ("rate", "i64")), lambda f, _d: tuple(f), itemgetter(0, 1))
)
_TX_LAYOUTS = {cls: _Layout(schema, _positional(cls, schema)) for cls, schema in _SCHEMAS.items()}


def encode_tx(tx: Tx) -> bytes:
    parts = [bytes([TX_TYPES[type(tx)]])]
    _TX_LAYOUTS[type(tx)].emit(parts, tx)
    return b"".join(parts)


def tx_type(data: bytes) -> TxType:
    """The type of an encoded transaction, read from its tag alone: a reader that wants
    one kind skips decoding (and hashing the orders of) every other."""
    if not data:
        _refuse_encoding("truncated encoding")
    try:
        return TxType(data[0])
    except ValueError:
        _refuse_encoding("unknown transaction type")


def decode_tx(data: bytes, domain: Domain) -> Tx:
    """Strict inverse of encode_tx; order hashes are recomputed, never read."""
    cls = _BY_TAG[tx_type(data)]
    out: list[Any] = []
    if _TX_LAYOUTS[cls].read(data, 1, domain, out) != len(data):
        _refuse_encoding("trailing bytes")
    tx: Tx = out[0]
    return tx


def encode_order(order: Order) -> bytes:
    return _ORDER.encode(order)


def decode_order(data: bytes) -> Order:
    """Strict inverse of encode_order (an order as signed, without its signature)."""
    return _ORDER.decode(data, _UNSIGNED)  # type: ignore[no-any-return]


_ACCOUNT_HEAD = (("owner", "addr"), ("subaccount", "u32"), ("collateral", "i128"), ("nonce", "u64"))


def encoded_bytes(*kinds: str) -> int:
    """How many bytes Writer.int / Writer.raw write for these kinds, in all."""
    return sum(_WIDTHS[k] if k in _WIDTHS else _BYTES[k] for k in kinds)


ACCOUNT_HEAD_BYTES = encoded_bytes(*(kind for _, kind in _ACCOUNT_HEAD), "u8")  # + count
POSITION_BYTES = encoded_bytes("u16", "i128", "i128", "i128")


def account_leaf_bytes(positions: int) -> int:
    """len(encode_account(a)) of an account holding `positions` positions."""
    return ACCOUNT_HEAD_BYTES + POSITION_BYTES * positions


_VARIABLE["held"] = _counted(  # an account's positions, by market
    _Layout(
        (("market_id", "u16"), ("size", "i128"), ("funding_index", "i128"), ("cost", "i128")),
        lambda f, _d: (f[0], Position(*f[1:])),
        lambda held: (held[0], held[1].size, held[1].funding_index, held[1].cost),
    )
)
_ACCOUNT = _Layout(
    (*_ACCOUNT_HEAD, ("positions", "held")),
    lambda f, _d: f,
    lambda a: (a.owner, a.subaccount, a.collateral, a.nonce, sorted(a.positions.items())),
)


def encode_account(account: Account) -> bytes:
    """The account leaf: head, then positions sorted by market (the escape hatch reads it)."""
    return _ACCOUNT.encode(account)


def decode_account(account_id: int, data: bytes) -> Account:
    owner, subaccount, collateral, nonce, held = _ACCOUNT.decode(data, _UNSIGNED)
    markets = [market_id for market_id, _ in held]
    if any(b <= a for a, b in pairwise(markets)):
        _refuse_encoding("positions must be in strictly ascending market order")
    return Account(account_id, owner, subaccount, collateral, nonce, dict(held))


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
