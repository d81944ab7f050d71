"""State snapshots: a whole `ExchangeState` as bytes, so recovery replays only the log after it.

A snapshot is taken at a batch boundary in two steps. `capture` is cheap and
synchronous: it freezes references to what the state holds (committed
accounts are replaced on commit, never changed in place; order bodies are
immutable; only fill amounts are copied). `encode` does the slow part and may
run on another thread while the state moves on.

Layout (version 1), big-endian like perpnet.core.encoding:

    magic "PNSS" | u16 version | b32 config digest | b32 state root | u64 body length
    | body | b32 keccak of everything before it

    body: u32 globals length, ExchangeState.globals_bytes()
          u32 accounts; per account (ids 0, 1, ...): u16 length, encode_account
          u64 orders; per order (slots 0, 1, ...): b32 hash, u128 filled, encode_order

The Merkle trees are not stored: they are rebuilt from the leaves (dense
indices, so about two hashes per leaf) and their root must equal the one in
the header. Order bodies are outside the root (it commits to hash and fill),
so the checksum is what guards them. `restore` refuses a truncated or
altered snapshot, one of another version, and one taken under another
exchange configuration, with a `SnapshotError` that says which; it never
returns a partial state.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.accounts import Account
from perpnet.core.crypto import keccak
from perpnet.core.encoding import (
    Reader,
    Writer,
    decode_account,
    decode_order,
    encode_account,
    encode_order,
)
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.orders import Order
from perpnet.core.state import ExchangeConfig, ExchangeState, Globals, order_leaf

MAGIC = b"PNSS"
VERSION = 1
_HEAD = len(MAGIC) + 2 + 32 + 32 + 8
_ORDER_BYTES = len(encode_order(Order(b"\0" * 20, 0, 0, False, 0, 0)))


class SnapshotError(CoreError):
    """Bytes that are not a snapshot this code can restore under this configuration."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.ENCODING, f"snapshot: {message}")


@dataclass(frozen=True, slots=True)
class Image:
    """A state frozen at one instant: what `encode` writes, independent of later changes."""

    root: bytes
    globals: bytes
    accounts: tuple[Account, ...]  # by account id
    hashes: tuple[bytes, ...]  # order hashes by slot
    filled: list[int]  # by slot
    bodies: dict[bytes, Order]


def config_digest(config: ExchangeConfig) -> bytes:
    """What a snapshot is only valid under: the state machine's rules, not its data."""
    rules = (
        config.markets.markets,
        config.domain,
        sorted(config.oracle_signers),
        config.oracle_quorum,
        config.max_price_age_ms,
        config.min_funding_interval_ms,
        config.funding_period_ms,
        config.tree_depth,
    )
    return keccak(repr(rules).encode())


def capture(state: ExchangeState) -> Image:
    """Freeze `state` as it is now: linear in its size, but no encoding (that is `encode`).

    It allocates a handful of containers and no per-order ones, so that it does not
    set off a full garbage collection of a large heap on the caller's hot path.
    """
    fills = state.order_fills
    return Image(
        state.root(),
        state.globals_bytes(),
        tuple(state.accounts.values()),
        tuple(fills),
        [entry[1] for entry in fills.values()],
        dict(state.order_bodies),
    )


def encode(image: Image, config: ExchangeConfig) -> bytes:
    body = Writer()
    body.int("u32", len(image.globals))
    body.parts.append(image.globals)
    body.int("u32", len(image.accounts))
    for account in image.accounts:
        leaf = encode_account(account)
        body.int("u16", len(leaf))
        body.parts.append(leaf)
    body.int("u64", len(image.hashes))
    for order_hash, filled in zip(image.hashes, image.filled, strict=True):
        body.raw("b32", order_hash)
        body.int("u128", filled)
        body.parts.append(encode_order(image.bodies[order_hash]))
    data = body.getvalue()
    out = MAGIC + VERSION.to_bytes(2, "big") + config_digest(config) + image.root
    out += len(data).to_bytes(8, "big") + data
    return out + keccak(out)


def snapshot(state: ExchangeState) -> bytes:
    """`encode(capture(state))`: for callers that can afford to encode at once."""
    return encode(capture(state), state.config)


def peek_root(data: bytes) -> bytes:
    """The root a snapshot claims, without restoring it (refuses what is not a snapshot)."""
    _check_frame(data)
    return data[len(MAGIC) + 34 : len(MAGIC) + 66]


def _check_frame(data: bytes) -> None:
    if len(data) < _HEAD + 32 or data[: len(MAGIC)] != MAGIC:
        raise SnapshotError("not a snapshot (bad magic or too short)")
    version = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 2], "big")
    if version != VERSION:
        raise SnapshotError(f"version {version}; this code reads version {VERSION}")
    length = int.from_bytes(data[_HEAD - 8 : _HEAD], "big")
    if len(data) != _HEAD + length + 32:
        raise SnapshotError(f"{len(data)} bytes; the header says {_HEAD + length + 32}")
    if keccak(data[:-32]) != data[-32:]:
        raise SnapshotError("checksum mismatch: the bytes were altered")


def restore(data: bytes, config: ExchangeConfig) -> ExchangeState:
    """The state a snapshot holds, its root checked; SnapshotError if it cannot be trusted."""
    _check_frame(data)
    if data[len(MAGIC) + 2 : len(MAGIC) + 34] != config_digest(config):
        raise SnapshotError("taken under another exchange configuration")
    root = data[len(MAGIC) + 34 : len(MAGIC) + 66]
    try:
        state = _rebuild(Reader(data[_HEAD:-32]), config)
    except SnapshotError:
        raise
    except CoreError as exc:
        raise SnapshotError(f"malformed body ({exc.message})") from None
    if state.root() != root:
        raise SnapshotError(
            f"restored root 0x{state.root().hex()} differs from the recorded 0x{root.hex()}"
        )
    return state


def _rebuild(r: Reader, config: ExchangeConfig) -> ExchangeState:
    state = ExchangeState(config)
    g = Globals.decode(r.take(r.int("u32")), config.markets)
    accounts: dict[int, Account] = {}
    ids: dict[tuple[bytes, int], int] = {}
    for account_id in range(r.int("u32")):
        leaf = r.take(r.int("u16"))
        account = decode_account(account_id, leaf)
        if ids.setdefault((account.owner, account.subaccount), account_id) != account_id:
            raise SnapshotError(f"account {account_id} repeats an owner and subaccount")
        accounts[account_id] = account
        state.account_tree.set(account_id, keccak(leaf))
    fills: dict[bytes, list[int]] = {}
    bodies: dict[bytes, Order] = {}
    for slot in range(r.int("u64")):
        order_hash = r.raw("b32")
        filled = r.int("u128")
        if order_hash in fills:
            raise SnapshotError(f"order slot {slot} repeats a hash")
        fills[order_hash] = [slot, filled]
        bodies[order_hash] = decode_order(r.take(_ORDER_BYTES))
        state.order_tree.set(slot, order_leaf(order_hash, filled))
    r.done()
    if len(accounts) < len(state.accounts):
        raise SnapshotError("the protocol accounts are missing")
    if (g.num_accounts, g.num_orders) != (len(accounts), len(fills)):
        raise SnapshotError("the globals count other accounts or orders than the body holds")
    state.accounts, state.ids = accounts, ids
    state.order_fills, state.order_bodies = fills, bodies
    state.prices = {m: p for m, p in g.prices.items() if p}  # a price is never 0: 0 is none
    state.price_times = {m: t for m, t in g.price_times.items() if m in state.prices}
    state.funding_index = g.indices
    state.clock_ms, state.last_funding_ms = g.clock_ms, g.last_funding_ms
    state.next_deposit_id, state.next_forced_id = g.next_deposit_id, g.next_forced_id
    state.total_deposited, state.total_withdrawn = g.total_deposited, g.total_withdrawn
    state.last_touched = []
    return state
