"""Typed-data digests, domain separation, and signature recovery edge cases."""

from __future__ import annotations

import dataclasses

import pytest

from perpnet.core.crypto import PrivateKey, keccak, recover
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.orders import ORDER_TYPE, Order, OrderKind, SignedOrder, TimeInForce
from perpnet.core.state import ExchangeConfig
from perpnet.core.txs import ORACLE_PRICE_TYPE, TRANSFER_TYPE, WITHDRAW_TYPE, SignedPrice, Withdraw
from perpnet.core.typed_data import Domain, StructType, word
from perpnet.testkit import ORACLE_KEYS, Desk, config, trader

ALICE, BOB = trader("alice"), trader("bob")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ORDER = Order(
    ALICE.address,
    7,
    1,
    True,
    12 * 10**6,
    2_000 * USD,
    OrderKind.STOP_LIMIT,
    TimeInForce.IOC,
    1_990 * USD,
    True,
    nonce=42,
    expiry_ms=1_700_000_000_000,
)


def u256(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_known_vectors() -> None:
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    one = PrivateKey(u256(1))
    assert one.address.hex() == "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
    assert PrivateKey.from_seed(b"x").address == PrivateKey.from_seed(b"x").address
    with pytest.raises(CoreError) as info:
        PrivateKey(b"\x01" * 31)
    assert info.value.code == ErrorCode.INVALID_FIELD


def test_order_digest_by_hand() -> None:
    order_type = (
        "Order(address owner,uint32 subaccount,uint16 market,bool isBuy,uint128 size,"
        "uint128 price,uint8 kind,uint8 timeInForce,uint128 triggerPrice,bool reduceOnly,"
        "uint8 selfTrade,uint64 nonce,uint64 expiry)"
    )
    assert ORDER_TYPE.signature == order_type
    struct = keccak(
        keccak(order_type.encode())
        + bytes(12)
        + ALICE.address
        + u256(7)
        + u256(1)
        + u256(1)
        + u256(12 * 10**6)
        + u256(2_000 * USD)
        + u256(3)  # STOP_LIMIT
        + u256(1)  # IOC
        + u256(1_990 * USD)
        + u256(1)
        + u256(0)  # CANCEL_MAKER
        + u256(42)
        + u256(1_700_000_000_000)
    )
    domain_type = (
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    separator = keccak(
        keccak(domain_type) + keccak(b"perpnet") + keccak(b"1") + u256(31337) + bytes(32)
    )
    assert Domain().separator == separator
    assert ORDER.digest(Domain()) == keccak(b"\x19\x01" + separator + struct)


def test_digest_is_stable() -> None:
    # pinned: any change to field order, types, names or the domain changes every signature
    sep = "e9c4b00fc05fd088b2e3ff3bdfa1d681b3dac3754b07e6c2a5049089535fc446"
    assert Domain().separator.hex() == sep
    digest = "8de9f6d0e5ac0ab950b0caedac22801b17da5567caa0f3becd98db198e265fdc"
    assert ORDER.digest(Domain()).hex() == digest
    assert ORDER.digest(Domain(31337, bytes(20), "perpnet", "1")).hex() == digest
    assert dataclasses.replace(ORDER, nonce=43).digest(Domain()).hex() != digest


@pytest.mark.parametrize(
    "other",
    [
        Domain(chain_id=1),
        Domain(verifying_contract=b"\x01" * 20),
        Domain(name="perpnet2"),
        Domain(version="2"),
    ],
    ids=["chain", "contract", "name", "version"],
)
def test_domain_separation(other: Domain) -> None:
    home = Domain()
    assert other.separator != home.separator
    assert ORDER.digest(other) != ORDER.digest(home)
    signed = SignedOrder.create(ORDER, ALICE, home)
    signed.verify()
    # the same signature presented to another deployment recovers someone else
    elsewhere = SignedOrder.received(ORDER, signed.signature, other)
    with pytest.raises(CoreError) as info:
        elsewhere.verify()
    assert info.value.code == ErrorCode.BAD_SIGNATURE
    tx = Withdraw(5, ALICE.address, 0, USD, ALICE.address, 0, 10).signed(ALICE, home)
    tx.verify(home)
    with pytest.raises(CoreError) as info:
        tx.verify(other)
    assert info.value.code == ErrorCode.BAD_SIGNATURE
    price = SignedPrice.create(ORACLE_KEYS[0], 0, USD, 5, home)
    price.verify(0, home)
    with pytest.raises(CoreError):
        price.verify(0, other)


def test_a_state_on_another_chain_refuses_home_signatures(reject) -> None:
    home = Desk()
    away = Desk(dataclasses.replace(config(), domain=Domain(chain_id=1)))
    assert isinstance(away.config, ExchangeConfig)
    state = away.state()
    state.apply(away.deposit(ALICE, 10 * USD))
    state.apply(away.price(0, 50_000 * USD))  # oracle signs for this chain
    home_tx = home.withdraw(ALICE, USD, nonce=0)
    reject(state, dataclasses.replace(home_tx, timestamp_ms=away.tick()), ErrorCode.BAD_SIGNATURE)
    state.apply(away.withdraw(ALICE, USD, nonce=0))
    assert state.account(2).collateral == 9 * USD


def test_struct_types_are_separated() -> None:
    # withdraw and transfer share owner/subaccount/amount/nonce/expiry but hash differently
    assert len({WITHDRAW_TYPE.type_hash, TRANSFER_TYPE.type_hash, ORACLE_PRICE_TYPE.type_hash}) == 3
    retyped = StructType("Order", (("owner", "address"), ("subaccount", "uint64")))
    assert retyped.type_hash != StructType("Order", ORDER_TYPE.fields[:2]).type_hash


def test_signing_is_deterministic_and_tamper_evident() -> None:
    digest = ORDER.digest(Domain())
    sig = ALICE.sign(digest)
    assert sig == ALICE.sign(digest)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert recover(digest, sig) == ALICE.address
    # a different message with the same signature recovers a different address
    assert recover(keccak(b"other"), sig) != ALICE.address
    signed = SignedOrder.create(ORDER, ALICE, Domain())
    tampered = SignedOrder.received(
        dataclasses.replace(ORDER, size=13 * 10**6), signed.signature, Domain()
    )
    with pytest.raises(CoreError) as info:
        tampered.verify()
    assert info.value.code == ErrorCode.BAD_SIGNATURE
    with pytest.raises(CoreError) as info:
        SignedOrder.create(ORDER, BOB, Domain())
    assert info.value.code == ErrorCode.NOT_OWNER


def _malformed() -> dict[str, tuple[bytes, bytes]]:
    digest = keccak(b"message")
    sig = ALICE.sign(digest)
    r, s = sig[:32], sig[32:64]
    return {
        "short": (digest, sig[:64]),
        "long": (digest, sig + b"\x00"),
        "empty": (digest, b""),
        "v=0": (digest, sig[:64] + b"\x00"),
        "v=1": (digest, sig[:64] + b"\x01"),
        "v=29": (digest, sig[:64] + b"\x1d"),
        "r=0": (digest, bytes(32) + s + sig[64:]),
        "s=0": (digest, r + bytes(32) + sig[64:]),
        "r=n": (digest, u256(SECP256K1_N) + s + sig[64:]),
        "s=n": (digest, r + u256(SECP256K1_N) + sig[64:]),
        "all-ff": (digest, b"\xff" * 64 + b"\x1b"),
        "digest-31": (digest[:31], sig),
        "digest-33": (digest + b"\x00", sig),
    }


@pytest.mark.parametrize("case", list(_malformed()))
def test_recover_rejects_malformed_signatures(case: str) -> None:
    digest, sig = _malformed()[case]
    with pytest.raises(CoreError) as info:
        recover(digest, sig)
    assert info.value.code == ErrorCode.BAD_SIGNATURE


def test_high_s_twin_recovers_the_same_signer() -> None:
    # like L1 ecrecover, recover does not enforce low s: (r, n - s, v ^ 1) is a second valid
    # signature. Harmless here: order ids and fill tracking hash the order, not the signature.
    digest = keccak(b"message")
    sig = ALICE.sign(digest)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + u256(SECP256K1_N - s) + bytes([55 - sig[64]])
    assert twin != sig
    assert recover(digest, twin) == ALICE.address


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (2**32, "uint32"),
        (-1, "uint8"),
        (True, "uint8"),
        (b"\x00" * 19, "address"),
        (2**127, "int128"),
    ],
)
def test_typed_words_are_range_checked(value: int | bytes, kind: str) -> None:
    with pytest.raises(CoreError) as info:
        word(value, kind)
    assert info.value.code == ErrorCode.INVALID_FIELD


def test_typed_words_encode_like_abi() -> None:
    assert word(-1, "int64") == b"\xff" * 32
    assert word(True, "bool") == u256(1)
    assert word(2**32 - 1, "uint32") == u256(2**32 - 1)
    assert word(ALICE.address, "address") == bytes(12) + ALICE.address
    with pytest.raises(CoreError) as info:
        ORDER_TYPE.struct_hash(ORDER.fields()[:-1])
    assert info.value.code == ErrorCode.INVALID_FIELD
    with pytest.raises(CoreError) as info:
        dataclasses.replace(ORDER, subaccount=2**32).digest(Domain())
    assert info.value.code == ErrorCode.INVALID_FIELD


def test_wallets_sign_the_same_digest() -> None:
    """A wallet's eth_signTypedData_v4 (eth-account's EIP-712) signs exactly our order digest."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    def typed(value: object, kind: str) -> object:
        return "0x" + value.hex() if kind == "address" and isinstance(value, bytes) else value

    message = {
        name: typed(value, kind)
        for (name, kind), value in zip(ORDER_TYPE.fields, ORDER.fields(), strict=True)
    }
    domain_fields = [("name", "string"), ("version", "string"), ("chainId", "uint256")]
    domain_fields.append(("verifyingContract", "address"))
    full = {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in domain_fields],
            "Order": [{"name": n, "type": t} for n, t in ORDER_TYPE.fields],
        },
        "primaryType": "Order",
        "domain": {
            "name": "perpnet",
            "version": "1",
            "chainId": 31337,
            "verifyingContract": "0x" + "00" * 20,
        },
        "message": message,
    }
    signed = Account.sign_message(encode_typed_data(full_message=full), ALICE.secret)
    signature = signed.signature
    assert SignedOrder(ORDER, bytes(signature), ORDER.digest(Domain())).hash == signed.message_hash
    SignedOrder(ORDER, bytes(signature), ORDER.digest(Domain())).verify()
