"""Snapshots: a round trip keeps the root; anything but an intact one of this config is refused."""

from __future__ import annotations

import pytest

from perpnet.core import snapshot
from perpnet.core.crypto import keccak
from perpnet.core.markets import USD
from perpnet.core.snapshot import SnapshotError
from perpnet.core.state import ExchangeState
from perpnet.testkit import Desk, config, trader

ALICE, BOB = trader("alice"), trader("bob")


def traded(desk: Desk) -> ExchangeState:
    state = desk.state()
    for tx in (
        desk.price(0, 50_000 * USD),
        desk.deposit(ALICE, 10_000 * USD),
        desk.deposit(BOB, 10_000 * USD),
        desk.cross(ALICE, BOB, 0, True, 10**8, 50_000 * USD),
        desk.withdraw(ALICE, 100 * USD, 0),
    ):
        state.apply(tx)
    return state


def test_round_trip_keeps_root_globals_and_accounts() -> None:
    desk = Desk()
    state = traded(desk)
    data = snapshot.snapshot(state)
    restored = snapshot.restore(data, desk.config)
    assert restored.root() == state.root()
    assert snapshot.peek_root(data) == state.root()
    assert restored.globals_bytes() == state.globals_bytes()
    assert restored.accounts == state.accounts
    assert (
        restored.account_of(BOB.address, 0).positions == state.account_of(BOB.address, 0).positions
    )


def _reframe(data: bytes, body: bytes) -> bytes:
    """The same header around another body, with a valid length and checksum."""
    head = data[: snapshot._HEAD - 8] + len(body).to_bytes(8, "big")
    return head + body + keccak(head + body)


def _altered_body(data: bytes) -> bytes:
    body = bytearray(data[snapshot._HEAD : -32])
    body[-snapshot._ORDER_BYTES - 1] ^= 1  # the last order's filled amount
    return _reframe(data, bytes(body))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: d[:-1], "header says"),
        (lambda d: d[:50], "too short"),
        (lambda d: d + b"\0", "header says"),
        (lambda d: d[:200] + bytes([d[200] ^ 0xFF]) + d[201:], "checksum"),
        (lambda d: b"XXXX" + d[4:], "bad magic"),
        (lambda d: d[:4] + (2).to_bytes(2, "big") + d[6:], "version 2"),
        (lambda d: b"", "too short"),
        (_altered_body, "differs from the recorded"),
        (lambda d: _reframe(d, d[snapshot._HEAD : -33]), "malformed body"),
    ],
)
def test_corrupt_snapshots_are_refused_clearly(corrupt: object, message: str) -> None:
    desk = Desk()
    data = snapshot.snapshot(traded(desk))
    assert callable(corrupt)
    with pytest.raises(SnapshotError, match=message):
        snapshot.restore(corrupt(data), desk.config)


def test_a_snapshot_is_only_restored_under_its_configuration() -> None:
    desk = Desk()
    data = snapshot.snapshot(traded(desk))
    with pytest.raises(SnapshotError, match="another exchange configuration"):
        snapshot.restore(data, config(quorum=3))


def test_encoding_is_deterministic_and_independent_of_later_changes() -> None:
    desk = Desk()
    state = traded(desk)
    image = snapshot.capture(state)
    before = snapshot.encode(image, desk.config)
    state.apply(desk.cross(BOB, ALICE, 0, True, 10**8, 50_000 * USD))  # mutates fills in place
    assert snapshot.encode(image, desk.config) == before
    assert snapshot.snapshot(snapshot.restore(before, desk.config)) == before
