"""Canonical transaction and account encodings: round trips and strict refusals."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpnet.core.accounts import Account, Position
from perpnet.core.encoding import (
    decode_account,
    decode_order,
    decode_signed_order,
    decode_tx,
    encode_account,
    encode_order,
    encode_tx,
    tx_type,
)
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.orders import OrderKind, SelfTrade, SignedOrder, TimeInForce
from perpnet.core.txs import (
    TX_TYPES,
    Deleverage,
    ForcedWithdrawal,
    FundingTick,
    Liquidate,
    Tx,
    TxType,
)
from perpnet.core.typed_data import Domain
from perpnet.testkit import Desk, trader

ALICE, BOB = trader("alice"), trader("bob")
DESK = Desk()
MAKER = DESK.order(
    ALICE,
    2,
    False,
    3 * 10**5,
    150_123_000,
    kind=OrderKind.TAKE_PROFIT_LIMIT,
    tif=TimeInForce.POST_ONLY,
    trigger_price=140 * USD,
    reduce_only=True,
    self_trade=SelfTrade.CANCEL_BOTH,
    subaccount=2**32 - 1,
    expiry_ms=2**64 - 1,
)
TAKER = DESK.order(BOB, 2, True, 10**5, 151 * USD, kind=OrderKind.MARKET, tif=TimeInForce.FOK)

ALL_TXS: dict[str, Tx] = {
    "deposit": DESK.deposit(ALICE, 2**128 - 1, subaccount=129),
    "withdraw": DESK.withdraw(ALICE, 5 * USD, nonce=2**64 - 1),
    "transfer": DESK.transfer(ALICE, BOB.address, USD, nonce=3, to_subaccount=200),
    "trade": DESK.trade(MAKER, TAKER, 10**5),
    "oracle": DESK.price(0, 50_000 * USD),
    "oracle-empty": dataclasses.replace(DESK.price(1, USD), observations=()),
    "funding": FundingTick(DESK.tick(), ((0, -(2**63)), (2, 2**63 - 1), (1, 0))),
    "funding-empty": FundingTick(DESK.tick(), ()),
    "liquidate-maker": Liquidate(DESK.tick(), 7, 2, 10**5, 150 * USD, MAKER),
    "liquidate-fund": Liquidate(DESK.tick(), 2**32 - 1, 0, 10**6, 0, None),
    "deleverage": Deleverage(DESK.tick(), 5, 6, 1, 10**9),
    "forced": ForcedWithdrawal(DESK.tick(), 9, ALICE.address, 0, 3 * USD, BOB.address),
}


def test_every_transaction_type_is_covered() -> None:
    assert {TX_TYPES[type(tx)] for tx in ALL_TXS.values()} == set(TxType)


@pytest.mark.parametrize("name", list(ALL_TXS))
def test_round_trip_is_exact(name: str) -> None:
    tx = ALL_TXS[name]
    data = encode_tx(tx)
    assert data[0] == TX_TYPES[type(tx)]
    decoded = decode_tx(data, DESK.config.domain)
    assert decoded == tx
    assert type(decoded) is type(tx)
    assert encode_tx(decoded) == data


@pytest.mark.parametrize("name", list(ALL_TXS))
def test_truncated_or_extended_bytes_are_refused(name: str) -> None:
    data = encode_tx(ALL_TXS[name])
    for cut in range(len(data)):
        with pytest.raises(CoreError) as info:
            decode_tx(data[:cut], DESK.config.domain)
        assert info.value.code == ErrorCode.ENCODING
    for tail in (b"\x00", b"\xff" * 7):
        with pytest.raises(CoreError) as info:
            decode_tx(data + tail, DESK.config.domain)
        assert info.value.code == ErrorCode.ENCODING


def test_the_type_is_read_from_the_tag_alone() -> None:
    for tx in ALL_TXS.values():
        assert tx_type(encode_tx(tx)) == TX_TYPES[type(tx)]
    # the tag only: a body that would not decode still has a type
    assert tx_type(bytes([TxType.TRADE]) + b"junk") == TxType.TRADE
    for data in (b"", b"\x00", b"\x0a"):
        with pytest.raises(CoreError) as info:
            tx_type(data)
        assert info.value.code == ErrorCode.ENCODING


def test_encoding_sizes_by_hand() -> None:
    # deposit: tag 1 + ts 8 + id 8 + owner 20 + sub 4 + amount 16
    assert len(encode_tx(ALL_TXS["deposit"])) == 57
    # an order: 20 + 4 + 2 + 1 + 16 + 16 + 1 + 1 + 16 + 1 + 1 + 8 + 8 = 95 (+ 65 signature)
    assert len(encode_order(MAKER.order)) == 95
    # trade: tag 1 + ts 8 + 2 × 160 + size 16 + price 16
    assert len(encode_tx(ALL_TXS["trade"])) == 361
    # oracle: 1 + 8 + 2 + 16 + count 1 + 3 × (20 + 16 + 8 + 65)
    assert len(encode_tx(ALL_TXS["oracle"])) == 28 + 3 * 109
    # funding: 1 + 8 + count 1 + 3 × (2 + 8)
    assert len(encode_tx(ALL_TXS["funding"])) == 40
    # liquidate without a maker: 1 + 8 + 4 + 2 + 16 + 16 + flag 1
    assert len(encode_tx(ALL_TXS["liquidate-fund"])) == 48


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x0a", b"\xff", b"\x00" * 57, b"\x63" + bytes(56)],
    ids=["empty", "tag0", "tag10", "tag255", "zeros", "tag99"],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(CoreError) as info:
        decode_tx(data, Domain())
    assert info.value.code == ErrorCode.ENCODING


def _order_offset(field: int) -> int:
    """Byte offset, within a Trade encoding, of a field of the maker order."""
    widths = (20, 4, 2, 1, 16, 16, 1, 1, 16, 1, 1, 8, 8)
    return 1 + 8 + sum(widths[:field])


@pytest.mark.parametrize(
    ("field", "value"),
    [(3, 2), (3, 255), (6, 6), (7, 4), (9, 2), (10, 3)],
    ids=["is_buy=2", "is_buy=255", "kind=6", "tif=4", "reduce_only=2", "self_trade=3"],
)
def test_out_of_range_flags_and_enums_are_refused(field: int, value: int) -> None:
    data = bytearray(encode_tx(ALL_TXS["trade"]))
    data[_order_offset(field)] = value
    with pytest.raises(CoreError) as info:
        decode_tx(bytes(data), DESK.config.domain)
    assert info.value.code == ErrorCode.ENCODING


def test_liquidate_maker_flag_must_be_a_bool() -> None:
    data = bytearray(encode_tx(ALL_TXS["liquidate-fund"]))
    assert data[-1] == 0
    data[-1] = 2
    with pytest.raises(CoreError) as info:
        decode_tx(bytes(data), DESK.config.domain)
    assert info.value.code == ErrorCode.ENCODING


def test_order_hashes_are_recomputed_under_the_decoding_domain() -> None:
    data = encode_tx(ALL_TXS["trade"])
    other = decode_tx(data, Domain(chain_id=1))
    assert other != ALL_TXS["trade"]
    assert other.maker.order == MAKER.order
    assert other.maker.hash == MAKER.order.digest(Domain(chain_id=1))
    assert other.maker.hash != MAKER.hash
    # a hash smuggled into the object is never encoded: the wire carries order + signature
    forged = dataclasses.replace(ALL_TXS["trade"], maker=dataclasses.replace(MAKER, hash=b"x" * 32))
    assert encode_tx(forged) == data


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(list(ALL_TXS)),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_whatever_decodes_is_canonical(name: str, edits: list[tuple[int, int]]) -> None:
    """Bytes with a few bytes changed either are refused or re-encode to exactly themselves:
    no value has two encodings (a flag of 2, an enum out of range, a count that disagrees
    with the length)."""
    data = bytearray(encode_tx(ALL_TXS[name]))
    for at, value in edits:
        data[at % len(data)] = value
    try:
        tx = decode_tx(bytes(data), DESK.config.domain)
    except CoreError as exc:
        assert exc.code == ErrorCode.ENCODING
        return
    assert encode_tx(tx) == bytes(data)


def test_a_signed_order_as_received_is_the_order_decoded_then_hashed() -> None:
    raw = encode_order(MAKER.order)
    for domain in (DESK.config.domain, Domain(chain_id=1)):
        signed = decode_signed_order(raw, MAKER.signature, domain)
        assert signed == SignedOrder.received(decode_order(raw), MAKER.signature, domain)
    assert decode_signed_order(raw, MAKER.signature, DESK.config.domain) == MAKER
    # a short signature is left to verify() to refuse; the order is still decoded strictly
    short = decode_signed_order(raw, MAKER.signature[:64], DESK.config.domain)
    assert short.signature == MAKER.signature[:64]
    with pytest.raises(CoreError) as info:
        short.verify()
    assert info.value.code == ErrorCode.BAD_SIGNATURE
    with pytest.raises(CoreError) as info:
        decode_signed_order(raw[:-1], MAKER.signature, DESK.config.domain)
    assert info.value.code == ErrorCode.ENCODING


@pytest.mark.parametrize(
    "tx",
    [
        dataclasses.replace(ALL_TXS["deposit"], amount=2**128),
        dataclasses.replace(ALL_TXS["deposit"], amount=-1),
        dataclasses.replace(ALL_TXS["deposit"], subaccount=2**32),
        dataclasses.replace(ALL_TXS["deposit"], owner=b"\x01" * 19),
        dataclasses.replace(ALL_TXS["withdraw"], signature=b"\x01" * 64),
        FundingTick(1, ((0, 2**63),)),
        FundingTick(1, tuple((m, 0) for m in range(256))),
        dataclasses.replace(ALL_TXS["oracle"], timestamp_ms=-1),
        # a bad value in a run of fields that also holds a 128-bit one
        dataclasses.replace(ALL_TXS["withdraw"], nonce=2**64),
        dataclasses.replace(ALL_TXS["deposit"], subaccount=1.0),
        dataclasses.replace(
            ALL_TXS["trade"],
            maker=dataclasses.replace(MAKER, order=dataclasses.replace(MAKER.order, nonce=2**64)),
        ),
        dataclasses.replace(
            ALL_TXS["oracle"],
            observations=(dataclasses.replace(ALL_TXS["oracle"].observations[0], timestamp_ms=-1),),
        ),
    ],
    ids=[
        "u128-over", "u128-neg", "u32-over", "addr-19", "sig-64", "i64-over", "256-rates", "neg",
        "u64-over-beside-u128", "float", "order-u64-over", "price-neg",
    ],
)  # fmt: skip
def test_unencodable_values_are_refused(tx: Tx) -> None:
    with pytest.raises(CoreError) as info:
        encode_tx(tx)
    assert info.value.code == ErrorCode.ENCODING


# ------------------------------------------------------------------------------ accounts

ACCOUNT = Account(
    9,
    ALICE.address,
    128,
    collateral=-(2**100),
    nonce=17,
    positions={2: Position(-(10**5), -3, -150 * USD), 0: Position(10**6, 2**90, 50 * USD)},
)


def test_account_leaf_round_trip() -> None:
    data = encode_account(ACCOUNT)
    # head 20 + 4 + 16 + 8, count 1, then (2 + 16 + 16 + 16) per position, sorted by market
    assert len(data) == 49 + 2 * 50
    assert data[49:51] == b"\x00\x00" and data[99:101] == b"\x00\x02"
    back = decode_account(9, data)
    assert back == ACCOUNT
    assert list(back.positions) == [0, 2]
    assert encode_account(back) == data
    empty = Account(2, BOB.address, 0)
    assert decode_account(2, encode_account(empty)) == empty
    assert len(encode_account(empty)) == 49


def test_account_leaf_truncated_or_extended_is_refused() -> None:
    data = encode_account(ACCOUNT)
    for bad in (data[:-1], data[:48], data + b"\x00", b""):
        with pytest.raises(CoreError) as info:
            decode_account(9, bad)
        assert info.value.code == ErrorCode.ENCODING


def test_account_leaf_with_unsorted_or_repeated_markets_is_refused() -> None:
    # "every value has exactly one encoding, and decoding refuses anything else":
    # positions are written sorted by market, so any other order is not canonical
    data = encode_account(ACCOUNT)
    head, first, second = data[:49], data[49:99], data[99:]
    for bad in (head + second + first, head[:-1] + b"\x02" + first + first):
        with pytest.raises(CoreError) as info:
            decode_account(9, bad)
        assert info.value.code == ErrorCode.ENCODING
