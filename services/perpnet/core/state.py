"""The exchange state machine: the single authority over L2 state.

`ExchangeState.apply(tx)` either commits every effect of a transaction or
raises `CoreError` and changes nothing: handlers check and compute on clones
of the accounts they touch, and only then commit. The state root commits to
every account, every order's filled amount and the global parameters, so a
replay of the same transactions always reproduces the same root.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from perpnet.core import margin
from perpnet.core.accounts import (
    FEE_POOL_ID,
    FIRST_USER_ID,
    INSURANCE_FUND_ID,
    MAX_SUBACCOUNT,
    SYSTEM_OWNER,
    Account,
    Position,
)
from perpnet.core.crypto import keccak
from perpnet.core.deleverage import ranking
from perpnet.core.encoding import Reader, Writer, check_fields, encode_account
from perpnet.core.errors import CoreError, ErrorCode, require
from perpnet.core.events import (
    Deleveraged,
    DepositCredited,
    Event,
    Filled,
    FundingApplied,
    Liquidated,
    PriceUpdated,
    WithdrawalEmitted,
)
from perpnet.core.markets import PPM, Market, MarketSet
from perpnet.core.orders import MARKET_KINDS, Order, SignedOrder, TimeInForce, typed_digest
from perpnet.core.smt import ProofFootprint, SparseMerkleTree
from perpnet.core.txs import (
    Deleverage,
    Deposit,
    ForcedWithdrawal,
    FundingTick,
    Liquidate,
    OraclePriceTick,
    Trade,
    Transfer,
    Tx,
    Withdraw,
)
from perpnet.core.typed_data import Domain

MAX_TIMESTAMP_MS = 2**63 - 1
I128 = 1 << 127
U128 = 1 << 128


@dataclass(frozen=True)
class ExchangeConfig:
    markets: MarketSet = field(default_factory=MarketSet)
    domain: Domain = field(default_factory=Domain)
    oracle_signers: frozenset[bytes] = frozenset()
    oracle_quorum: int = 1
    max_price_age_ms: int = 30_000
    min_funding_interval_ms: int = 60_000
    funding_period_ms: int = 3_600_000  # a market's max funding rate is per this period
    tree_depth: int = 32

    def __post_init__(self) -> None:
        require(self.oracle_quorum >= 1, ErrorCode.INVALID_FIELD, "oracle quorum must be >= 1")
        require(
            not self.oracle_signers or self.oracle_quorum <= len(self.oracle_signers),
            ErrorCode.INVALID_FIELD,
            "oracle quorum exceeds the number of signers",
        )
        require(self.max_price_age_ms > 0, ErrorCode.INVALID_FIELD, "price age must be positive")
        require(self.min_funding_interval_ms >= 0, ErrorCode.INVALID_FIELD, "negative interval")
        require(self.funding_period_ms > 0, ErrorCode.INVALID_FIELD, "funding period must be > 0")
        require(1 <= self.tree_depth <= 64, ErrorCode.INVALID_FIELD, "tree depth in [1, 64]")


@dataclass(slots=True)
class Globals:
    """`ExchangeState.globals_bytes()` decoded: the one reader of that layout."""

    clock_ms: int
    next_deposit_id: int
    next_forced_id: int
    num_accounts: int
    num_orders: int
    last_funding_ms: int
    total_deposited: int
    total_withdrawn: int
    prices: dict[int, int]
    price_times: dict[int, int]
    indices: dict[int, int]

    @classmethod
    def decode(cls, raw: bytes, markets: MarketSet) -> Globals:
        r = Reader(raw)
        head = [r.int(k) for k in ("u64", "u64", "u64", "u64", "u64", "i64", "u128", "u128")]
        prices: dict[int, int] = {}
        times: dict[int, int] = {}
        indices: dict[int, int] = {}
        for market in markets.markets:
            if r.int("u16") != market.market_id:
                raise CoreError(ErrorCode.ENCODING, "globals list other markets")
            prices[market.market_id] = r.int("u128")
            times[market.market_id] = r.int("u64")
            indices[market.market_id] = r.int("i128")
        r.done()
        clock, deposits, forced, accounts, orders, funding_ms, deposited, withdrawn = head
        return cls(
            clock, deposits, forced, accounts, orders, funding_ms, deposited, withdrawn,
            prices, times, indices,
        )  # fmt: skip

    def encode(self) -> bytes:
        """The bytes `decode` reads (markets in the order of `prices`): the one writer of
        that layout, so a changed value can be committed to without a whole state."""
        w = Writer()
        for kind, value in (
            ("u64", self.clock_ms),
            ("u64", self.next_deposit_id),
            ("u64", self.next_forced_id),
            ("u64", self.num_accounts),
            ("u64", self.num_orders),
            ("i64", self.last_funding_ms),
            ("u128", self.total_deposited),
            ("u128", self.total_withdrawn),
        ):
            w.int(kind, value)
        for m, price in self.prices.items():
            w.int("u16", m)
            w.int("u128", price)
            w.int("u64", self.price_times[m])
            w.int("i128", self.indices[m])
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class AccountDiff:
    account_id: int
    old_leaf: bytes  # b"" where the account did not exist
    new_leaf: bytes


@dataclass(frozen=True, slots=True)
class OrderDiff:
    slot: int
    order_hash: bytes
    old_filled: int
    new_filled: int


@dataclass(frozen=True, slots=True)
class StateDiff:
    """What a batch changed: enough, with Merkle multiproofs, to move one root to the next."""

    old_root: bytes
    new_root: bytes
    old_globals: bytes
    new_globals: bytes
    accounts: tuple[AccountDiff, ...]
    orders: tuple[OrderDiff, ...]


MAX_ACCOUNTS_PER_TX = 4
"""The most accounts one transaction commits (a liquidation: the account, its counterparty,
the insurance fund and the fee pool); a sequencer keeps that much room in a batch."""
MAX_FILLS_PER_TX = 2
"""The most orders one transaction fills (a trade: maker and taker)."""


@dataclass(slots=True)
class _Batch:
    old_root: bytes
    old_globals: bytes
    account_paths: ProofFootprint
    order_paths: ProofFootprint
    accounts: dict[int, bytes] = field(default_factory=dict)  # id -> leaf before the batch
    orders: dict[bytes, int] = field(default_factory=dict)  # hash -> filled before the batch
    old_leaf_bytes: int = 0  # sum of the lengths of `accounts`' values
    positions: dict[int, int] = field(default_factory=dict)  # id -> positions held now
    new_positions: int = 0  # sum of `positions`' values: the new leaves' lengths follow


@dataclass(frozen=True, slots=True)
class BatchFootprint:
    """How much the open batch's diff holds: what its statement's size grows with."""

    accounts: int
    old_leaf_bytes: int
    new_positions: int
    account_siblings: int
    orders: int
    order_siblings: int
    globals_bytes: int
    tree_depth: int
    markets: int


def order_leaf(order_hash: bytes, filled: int) -> bytes:
    return keccak(order_hash + filled.to_bytes(16, "big"))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class ExchangeState:
    def __init__(self, config: ExchangeConfig | None = None) -> None:
        self.config = config or ExchangeConfig()
        self.markets = self.config.markets
        self.accounts: dict[int, Account] = {}
        self.ids: dict[tuple[bytes, int], int] = {}
        self.prices: dict[int, int] = {}
        self.price_times: dict[int, int] = {}
        self.funding_index: dict[int, int] = {m.market_id: 0 for m in self.markets.markets}
        self.last_funding_ms = -1
        self.clock_ms = 0
        self.next_deposit_id = 0
        self.next_forced_id = 0
        self.total_deposited = 0
        self.total_withdrawn = 0
        self.order_fills: dict[bytes, list[int]] = {}  # hash -> [slot, filled]
        self.order_bodies: dict[bytes, Order] = {}  # what each hash was first filled as
        self.account_tree = SparseMerkleTree(self.config.tree_depth)
        self.order_tree = SparseMerkleTree(self.config.tree_depth)
        self._dirty_accounts: set[int] = set()
        self._dirty_orders: set[bytes] = set()
        self._batch: _Batch | None = None
        self.last_touched: list[int] = []  # accounts the last applied transaction committed
        self._commit(
            [Account(INSURANCE_FUND_ID, SYSTEM_OWNER, 0), Account(FEE_POOL_ID, SYSTEM_OWNER, 1)]
        )

    # ------------------------------------------------------------------ queries

    def account_id(self, owner: bytes, subaccount: int) -> int | None:
        return self.ids.get((owner, subaccount))

    def account(self, account_id: int) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise CoreError(ErrorCode.UNKNOWN_ACCOUNT, f"no account {account_id}")
        return account

    def account_of(self, owner: bytes, subaccount: int) -> Account:
        account_id = self.ids.get((owner, subaccount))
        if account_id is None:
            raise CoreError(ErrorCode.UNKNOWN_ACCOUNT, f"no account {owner.hex()}/{subaccount}")
        return self.accounts[account_id]

    def risk(self, account: Account) -> margin.Risk:
        return margin.risk(account, self.markets, self.prices, self.funding_index)

    def filled(self, order_hash: bytes) -> int:
        entry = self.order_fills.get(order_hash)
        return 0 if entry is None else entry[1]

    def iter_accounts(self) -> Iterator[Account]:
        return iter(self.accounts.values())

    def open_interest(self, market_id: int) -> tuple[int, int]:
        """(total long, total short) sizes: equal, since positions are zero-sum."""
        longs = shorts = 0
        for account in self.accounts.values():
            size = account.size(market_id)
            if size > 0:
                longs += size
            else:
                shorts -= size
        return longs, shorts

    # ------------------------------------------------------------- commitment

    def globals_bytes(self) -> bytes:
        ids = [market.market_id for market in self.markets.markets]
        return Globals(
            self.clock_ms,
            self.next_deposit_id,
            self.next_forced_id,
            len(self.accounts),
            len(self.order_fills),
            self.last_funding_ms,
            self.total_deposited,
            self.total_withdrawn,
            {m: self.prices.get(m, 0) for m in ids},
            {m: self.price_times.get(m, 0) for m in ids},
            {m: self.funding_index[m] for m in ids},
        ).encode()

    def _flush(self) -> None:
        if self._dirty_accounts:
            for account_id in self._dirty_accounts:
                leaf = encode_account(self.accounts[account_id])
                self.account_tree.set(account_id, keccak(leaf))
            self._dirty_accounts.clear()
        if self._dirty_orders:
            for order_hash in self._dirty_orders:
                slot, filled = self.order_fills[order_hash]
                self.order_tree.set(slot, order_leaf(order_hash, filled))
            self._dirty_orders.clear()

    def root(self) -> bytes:
        """keccak(accounts root || orders root || keccak(globals))."""
        self._flush()
        return keccak(
            self.account_tree.root() + self.order_tree.root() + keccak(self.globals_bytes())
        )

    def account_proof(self, account_id: int) -> tuple[bytes, list[bytes]]:
        """The account's leaf encoding and its Merkle path (the escape hatch's input)."""
        self._flush()
        return encode_account(self.account(account_id)), self.account_tree.proof(account_id)

    def begin_batch(self) -> bytes:
        root = self.root()
        depth = self.config.tree_depth
        self._batch = _Batch(
            root, self.globals_bytes(), ProofFootprint(depth), ProofFootprint(depth)
        )
        return root

    def batch_footprint(self) -> BatchFootprint:
        batch = self._batch
        require(batch is not None, ErrorCode.INVALID_FIELD, "no batch open")
        assert batch is not None
        return BatchFootprint(
            len(batch.accounts),
            batch.old_leaf_bytes,
            batch.new_positions,
            batch.account_paths.siblings,
            len(batch.orders),
            batch.order_paths.siblings,
            len(batch.old_globals),
            self.config.tree_depth,
            len(self.markets.markets),
        )

    def end_batch(self) -> StateDiff:
        batch = self._batch
        require(batch is not None, ErrorCode.INVALID_FIELD, "no batch open")
        assert batch is not None
        new_root = self.root()
        self._batch = None
        accounts = tuple(
            AccountDiff(i, old, encode_account(self.accounts[i]))
            for i, old in sorted(batch.accounts.items())
        )
        orders = tuple(
            OrderDiff(self.order_fills[h][0], h, old, self.order_fills[h][1])
            for h, old in sorted(batch.orders.items(), key=lambda kv: self.order_fills[kv[0]][0])
        )
        return StateDiff(
            batch.old_root, new_root, batch.old_globals, self.globals_bytes(), accounts, orders
        )

    def _check_representable(self, account: Account) -> None:
        """Refuse, before committing, values that the leaf encoding or the tree cannot hold."""
        if account.account_id >= 1 << self.config.tree_depth:
            raise CoreError(ErrorCode.INVALID_FIELD, "the account tree is full")
        values = [account.collateral]
        for p in account.positions.values():
            values += (p.size, p.funding_index, p.cost)
        if any(not -I128 <= v < I128 for v in values) or account.nonce >= 1 << 64:
            raise CoreError(ErrorCode.INVALID_FIELD, "a balance would leave the i128 range")

    def _commit(self, accounts: list[Account]) -> None:
        assert len(accounts) <= MAX_ACCOUNTS_PER_TX
        for account in accounts:
            self._check_representable(account)
        batch = self._batch
        for account in accounts:
            account_id = account.account_id
            if batch is not None:
                if account_id not in batch.accounts:
                    old = self.accounts.get(account_id)
                    leaf = b"" if old is None else encode_account(old)
                    batch.accounts[account_id] = leaf
                    batch.old_leaf_bytes += len(leaf)
                    batch.account_paths.add(account_id)
                held = len(account.positions)
                batch.new_positions += held - batch.positions.get(account_id, 0)
                batch.positions[account_id] = held
            if account_id not in self.accounts:
                self.ids[(account.owner, account.subaccount)] = account_id
            self.accounts[account_id] = account
            self._dirty_accounts.add(account_id)
            self.last_touched.append(account_id)

    def _commit_fill(self, signed: SignedOrder, size: int) -> None:
        order_hash = signed.hash
        entry = self.order_fills.get(order_hash)
        batch = self._batch
        if entry is None:
            entry = self.order_fills[order_hash] = [len(self.order_fills), 0]
            self.order_bodies[order_hash] = signed.order
        if batch is not None and order_hash not in batch.orders:
            batch.orders[order_hash] = entry[1]
            batch.order_paths.add(entry[0])
        entry[1] += size
        self._dirty_orders.add(order_hash)

    # ------------------------------------------------------------------ apply

    def apply(self, tx: Tx, *, authenticated: bool = False) -> tuple[Event, ...]:
        """Apply one transaction: all of its effects, or none and a CoreError.

        `authenticated=True` skips signature checks that a caller (the
        sequencer, at admission) has already done; every other rule holds.
        """
        check_fields(tx)
        ts = tx.timestamp_ms
        if not self.clock_ms <= ts <= MAX_TIMESTAMP_MS:
            raise CoreError(ErrorCode.CLOCK, f"timestamp {ts} outside [{self.clock_ms}, 2**63)")
        verify = not authenticated
        self.last_touched = []
        events: tuple[Event, ...]
        if isinstance(tx, Trade):
            events = self._trade(tx, verify)
        elif isinstance(tx, Deposit):
            events = self._deposit(tx)
        elif isinstance(tx, Withdraw):
            events = self._withdraw(tx, verify)
        elif isinstance(tx, Transfer):
            events = self._transfer(tx, verify)
        elif isinstance(tx, OraclePriceTick):
            events = self._oracle(tx, verify)
        elif isinstance(tx, FundingTick):
            events = self._funding(tx)
        elif isinstance(tx, Liquidate):
            events = self._liquidate(tx, verify)
        elif isinstance(tx, Deleverage):
            events = self._deleverage(tx)
        elif isinstance(tx, ForcedWithdrawal):
            events = self._forced_withdrawal(tx)
        else:  # pragma: no cover - the Tx union is closed
            raise CoreError(ErrorCode.INVALID_FIELD, f"unknown transaction {type(tx).__name__}")
        self.clock_ms = ts
        return events

    # -------------------------------------------------------------- helpers

    def _new_or_clone(self, owner: bytes, subaccount: int) -> Account:
        require(len(owner) == 20, ErrorCode.INVALID_FIELD, "owner is a 20-byte address")
        require(0 <= subaccount <= MAX_SUBACCOUNT, ErrorCode.INVALID_FIELD, "subaccount is a u32")
        account_id = self.ids.get((owner, subaccount))
        if account_id is None:
            return Account(len(self.accounts), owner, subaccount)
        return self.accounts[account_id].clone()

    def _user_clone(self, owner: bytes, subaccount: int) -> Account:
        account = self.account_of(owner, subaccount).clone()
        require(not account.is_system, ErrorCode.NOT_OWNER, "protocol accounts cannot be spent")
        margin.settle_funding(account, self.funding_index, self.markets)
        return account

    def _settled_clone(self, account_id: int) -> Account:
        account = self.account(account_id).clone()
        margin.settle_funding(account, self.funding_index, self.markets)
        return account

    def _change_position(self, account: Account, market_id: int, delta: int, paid: int) -> None:
        """Move `delta` of position for `paid` quote (negative: received); tracks entry cost."""
        account.collateral -= paid
        position = account.positions.get(market_id)
        if position is None:
            account.positions[market_id] = Position(delta, self.funding_index[market_id], paid)
            return
        old = position.size
        new = old + delta
        if new == 0:
            del account.positions[market_id]
        elif old == 0 or (old > 0) == (delta > 0):
            position.cost += paid
        elif (old > 0) == (new > 0):
            position.cost = _trunc_div(position.cost * abs(new), abs(old))
        else:  # flipped: what remains was opened by the part of this fill past zero
            position.cost = _trunc_div(paid * abs(new), abs(delta))
        position.size = new

    def _check_after_trade(self, account: Account, market_id: int, old_size: int, ts: int) -> None:
        """Risk-increasing fills need initial margin; reducing ones keep maintenance."""
        if account.is_isolated:
            require(
                len(account.positions) <= 1,
                ErrorCode.ISOLATED_MARKET,
                "an isolated subaccount holds one market",
            )
        new_size = account.size(market_id)
        flipped = old_size != 0 and new_size != 0 and (old_size > 0) != (new_size > 0)
        increasing = abs(new_size) > abs(old_size) or flipped
        r = self._fresh_risk(account, ts)
        needed, what = (
            (r.initial, "initial margin") if increasing else (r.maintenance, "maintenance")
        )
        if r.value < needed:
            raise CoreError(
                ErrorCode.INSUFFICIENT_MARGIN,
                f"account {account.account_id}: value {r.value} below {what} {needed}",
            )

    def _check_order(
        self, signed: SignedOrder, market: Market, ts: int, size: int, verify: bool
    ) -> int:
        """Checks a fill of `size` against one signed order; returns its filled amount so far."""
        order = signed.order
        require(
            order.market_id == market.market_id, ErrorCode.UNKNOWN_MARKET, "order market differs"
        )
        order.validate(market)
        require(ts <= order.expiry_ms, ErrorCode.EXPIRED, "order expired")
        entry = self.order_fills.get(signed.hash)
        if entry is None:
            # first fill: the hash must be this body's digest in this domain, signed by its owner
            # (with authenticated=True the sequencer has checked both at admission)
            if verify:
                if typed_digest(order, self.config.domain) != signed.hash:  # check_fields ran
                    raise CoreError(ErrorCode.BAD_SIGNATURE, "order hash does not match its fields")
                signed.verify()
            if len(self.order_fills) + 2 > 1 << self.config.tree_depth:  # room for a pair
                raise CoreError(ErrorCode.INVALID_FIELD, "the order tree is full")
            filled = 0
        else:
            # later fills: the hash is bound to the body first filled under it
            if self.order_bodies[signed.hash] != order:
                raise CoreError(ErrorCode.BAD_SIGNATURE, "order differs from the one of this hash")
            filled = entry[1]
        require(filled + size <= order.size, ErrorCode.OVERFILL, "fill exceeds the order's size")
        return filled

    @staticmethod
    def _check_reduce_only(signed: SignedOrder, position: int, size: int) -> None:
        order = signed.order
        if order.reduce_only:
            reduces = position != 0 and (position > 0) != order.is_buy and size <= abs(position)
            require(reduces, ErrorCode.REDUCE_ONLY, "reduce-only order would increase the position")

    def _fee(self, quote: int, ppm: int) -> int:
        return _ceil_div(quote * ppm, PPM)

    def _oracle_price(self, market_id: int, ts: int) -> int:
        """The price in force, refused when older than the configured age."""
        price = margin.price_of(self.prices, market_id)
        if ts - self.price_times[market_id] > self.config.max_price_age_ms:
            raise CoreError(ErrorCode.ORACLE_STALE, f"oracle price of market {market_id} is stale")
        return price

    def _fresh_risk(self, account: Account, ts: int) -> margin.Risk:
        """Risk at prices no older than the limit: no margin decision rests on a stale mark."""
        for market_id in account.positions:
            self._oracle_price(market_id, ts)
        return self.risk(account)

    # ------------------------------------------------------------- handlers

    def _deposit(self, tx: Deposit) -> tuple[Event, ...]:
        require(
            tx.deposit_id == self.next_deposit_id,
            ErrorCode.DEPOSIT_ORDER,
            f"deposit {tx.deposit_id} out of order; next is {self.next_deposit_id}",
        )
        require(tx.amount > 0, ErrorCode.INVALID_FIELD, "deposit amount must be positive")
        require(
            tx.owner != SYSTEM_OWNER or tx.subaccount == INSURANCE_FUND_ID,
            ErrorCode.INVALID_FIELD,
            "the zero address takes deposits only into the insurance fund (subaccount 0)",
        )
        require(
            self.total_deposited + tx.amount < U128,
            ErrorCode.INVALID_FIELD,
            "deposit total overflows",
        )
        account = self._new_or_clone(tx.owner, tx.subaccount)
        account.collateral += tx.amount
        self._commit([account])
        self.next_deposit_id += 1
        self.total_deposited += tx.amount
        return (DepositCredited(tx.deposit_id, account.account_id, tx.amount),)

    def _spend(self, account: Account, amount: int, what: str, ts: int) -> None:
        account.collateral -= amount
        require(
            self._fresh_risk(account, ts).free_collateral >= 0,
            ErrorCode.INSUFFICIENT_COLLATERAL,
            f"{what} of {amount} exceeds free collateral",
        )

    def _check_request(
        self, account: Account, nonce: int, expiry_ms: int, ts: int, amount: int
    ) -> None:
        require(amount > 0, ErrorCode.INVALID_FIELD, "amount must be positive")
        require(nonce == account.nonce, ErrorCode.BAD_NONCE, f"nonce must be {account.nonce}")
        require(ts <= expiry_ms, ErrorCode.EXPIRED, "request expired")

    def _withdraw(self, tx: Withdraw, verify: bool) -> tuple[Event, ...]:
        account = self._user_clone(tx.owner, tx.subaccount)
        self._check_request(account, tx.nonce, tx.expiry_ms, tx.timestamp_ms, tx.amount)
        require(len(tx.recipient) == 20, ErrorCode.INVALID_FIELD, "recipient is an address")
        if verify:
            tx.verify(self.config.domain)
        account.nonce += 1
        self._spend(account, tx.amount, "withdrawal", tx.timestamp_ms)
        self._commit([account])
        self.total_withdrawn += tx.amount
        return (WithdrawalEmitted(account.account_id, tx.recipient, tx.amount, None),)

    def _transfer(self, tx: Transfer, verify: bool) -> tuple[Event, ...]:
        sender = self._user_clone(tx.owner, tx.subaccount)
        self._check_request(sender, tx.nonce, tx.expiry_ms, tx.timestamp_ms, tx.amount)
        receiver = self._new_or_clone(tx.to_owner, tx.to_subaccount)
        require(
            receiver.account_id != sender.account_id, ErrorCode.INVALID_FIELD, "transfer to self"
        )
        require(not receiver.is_system, ErrorCode.INVALID_FIELD, "cannot transfer to the protocol")
        if verify:
            tx.verify(self.config.domain)
        sender.nonce += 1
        self._spend(sender, tx.amount, "transfer", tx.timestamp_ms)
        receiver.collateral += tx.amount
        self._commit([sender, receiver])
        return ()

    def _trade(self, tx: Trade, verify: bool) -> tuple[Event, ...]:
        maker, taker = tx.maker, tx.taker
        market = self.markets.get(maker.order.market_id)
        ts, size, price = tx.timestamp_ms, tx.size, tx.price
        require(maker.order.is_buy != taker.order.is_buy, ErrorCode.INVALID_FIELD, "same side")
        require(maker.hash != taker.hash, ErrorCode.SELF_TRADE, "an order cannot fill itself")
        require(size > 0 and size % market.step_size == 0, ErrorCode.OFF_STEP, "fill off step")
        market.check_price(price)
        require(taker.order.tif != TimeInForce.POST_ONLY, ErrorCode.POST_ONLY, "post-only taker")
        require(
            maker.order.tif in (TimeInForce.GTT, TimeInForce.POST_ONLY)
            and maker.order.kind not in MARKET_KINDS,
            ErrorCode.INVALID_FIELD,
            "only resting limit orders can be makers",
        )
        buy, sell = (maker, taker) if maker.order.is_buy else (taker, maker)
        require(
            sell.order.price <= price <= buy.order.price,
            ErrorCode.PRICE_LIMIT,
            "fill price outside an order's limit",
        )
        self._check_order(maker, market, ts, size, verify)
        self._check_order(taker, market, ts, size, verify)
        a = self._user_clone(maker.order.owner, maker.order.subaccount)
        b = self._user_clone(taker.order.owner, taker.order.subaccount)
        require(
            a.account_id != b.account_id, ErrorCode.SELF_TRADE, "maker and taker are one account"
        )
        m = market.market_id
        a_old, b_old = a.size(m), b.size(m)
        self._check_reduce_only(maker, a_old, size)
        self._check_reduce_only(taker, b_old, size)
        quote = market.quote(size, price)
        maker_fee = self._fee(quote, market.maker_fee_ppm)
        taker_fee = self._fee(quote, market.taker_fee_ppm)
        sign = 1 if maker.order.is_buy else -1
        self._change_position(a, m, sign * size, sign * quote)
        self._change_position(b, m, -sign * size, -sign * quote)
        a.collateral -= maker_fee
        b.collateral -= taker_fee
        self._check_after_trade(a, m, a_old, ts)
        self._check_after_trade(b, m, b_old, ts)
        fees = self.account(FEE_POOL_ID).clone()
        fees.collateral += maker_fee + taker_fee
        self._commit([a, b, fees])
        self._commit_fill(maker, size)
        self._commit_fill(taker, size)
        return (
            Filled(
                m, a.account_id, b.account_id, maker.order.is_buy, size, price, maker_fee, taker_fee
            ),
        )

    def _oracle(self, tx: OraclePriceTick, verify: bool) -> tuple[Event, ...]:
        self.markets.get(tx.market_id)
        cfg = self.config
        obs = tx.observations
        signers = {o.signer for o in obs}
        require(len(signers) == len(obs), ErrorCode.ORACLE_QUORUM, "duplicate oracle signer")
        require(signers <= cfg.oracle_signers, ErrorCode.ORACLE_QUORUM, "unknown oracle signer")
        require(
            len(obs) >= cfg.oracle_quorum,
            ErrorCode.ORACLE_QUORUM,
            f"fewer than {cfg.oracle_quorum} signed prices",
        )
        for o in obs:
            require(
                tx.timestamp_ms - cfg.max_price_age_ms <= o.timestamp_ms <= tx.timestamp_ms,
                ErrorCode.ORACLE_STALE,
                "observation outside the price age window",
            )
        oldest = min(o.timestamp_ms for o in obs)
        require(
            oldest >= self.price_times.get(tx.market_id, 0),
            ErrorCode.ORACLE_STALE,
            "observations older than those of the price in force",
        )
        prices = sorted(o.price for o in obs)
        require(
            tx.price > 0 and prices[(len(prices) - 1) // 2] == tx.price,
            ErrorCode.ORACLE_QUORUM,
            "price is not the median of the observations",
        )
        if verify:
            for o in obs:
                o.verify(tx.market_id, cfg.domain)
        self.prices[tx.market_id] = tx.price
        self.price_times[tx.market_id] = oldest  # a price is as old as its oldest observation
        return (PriceUpdated(tx.market_id, tx.price),)

    def _funding(self, tx: FundingTick) -> tuple[Event, ...]:
        require(
            self.last_funding_ms < 0
            or tx.timestamp_ms >= self.last_funding_ms + self.config.min_funding_interval_ms,
            ErrorCode.CLOCK,
            "funding tick before the funding interval elapsed",
        )
        markets = [m for m, _ in tx.rates]
        require(len(set(markets)) == len(markets), ErrorCode.INVALID_FIELD, "market repeated")
        deltas: list[tuple[int, int]] = []
        period = self.config.funding_period_ms
        elapsed = period if self.last_funding_ms < 0 else tx.timestamp_ms - self.last_funding_ms
        for market_id, rate in tx.rates:
            market = self.markets.get(market_id)
            # the clamp is per funding period: frequent ticks each move a share of it
            limit = market.max_funding_rate_ppb * min(elapsed, period) // period
            if abs(rate) > limit:
                raise CoreError(ErrorCode.FUNDING_CLAMP, f"|rate| {abs(rate)} above {limit} ppb")
            price = self._oracle_price(market_id, tx.timestamp_ms)
            deltas.append((market_id, market.funding_delta(rate, price)))
        for market_id, delta in deltas:
            self.funding_index[market_id] += delta
        self.last_funding_ms = tx.timestamp_ms
        return tuple(FundingApplied(m, d, self.funding_index[m]) for m, d in deltas)

    def _bankruptcy_receipt(self, account: Account, market: Market, delta: int) -> int:
        """Quote the account receives for moving `delta` so it keeps only its share of value.

        The closed part's share of the account's value is its share of the
        maintenance requirement (dYdX's bankruptcy price); closing the whole
        account at bankruptcy prices leaves it at zero.
        """
        m = market.market_id
        held = account.size(m)
        if abs(delta) == abs(held) and len(account.positions) == 1:
            return -account.collateral  # closing everything leaves exactly zero
        r = self.risk(account)
        price = self.prices[m]
        part = market.requirement(held, price, False) * abs(delta)
        whole = r.maintenance * abs(held)
        if not whole:
            part, whole = abs(delta), abs(held)
        share = _ceil_div(r.value * part, whole)  # rounded against the account
        return (-share * market.size_scale - delta * price) // market.size_scale

    def _closing_delta(self, account: Account, market_id: int, size: int) -> int:
        held = account.size(market_id)
        market = self.markets.get(market_id)
        require(held != 0, ErrorCode.INVALID_FIELD, "no position to close")
        require(size > 0 and size % market.step_size == 0, ErrorCode.OFF_STEP, "size off step")
        require(size <= abs(held), ErrorCode.INVALID_FIELD, "size exceeds the position")
        return -size if held > 0 else size

    def _takeover(self, account: Account, market: Market, delta: int) -> tuple[Account, int]:
        """The insurance fund takes `delta` over at the bankruptcy price, if it stays solvent."""
        receipt = self._bankruptcy_receipt(account, market, delta)
        fund = self._settled_clone(INSURANCE_FUND_ID)
        self._change_position(fund, market.market_id, -delta, receipt)
        fund_value = self.risk(fund).value
        require(
            fund_value >= 0,
            ErrorCode.INSURANCE_INSUFFICIENT,
            "insurance fund cannot absorb the loss",
        )
        return fund, receipt

    def _liquidate(self, tx: Liquidate, verify: bool) -> tuple[Event, ...]:
        market = self.markets.get(tx.market_id)
        m = market.market_id
        oracle = self._oracle_price(m, tx.timestamp_ms)
        account = self._settled_clone(tx.account_id)
        # the insurance fund closes what it took over against resting orders, at any time
        fund_inventory = account.account_id == INSURANCE_FUND_ID
        require(
            fund_inventory or not account.is_system,
            ErrorCode.NOT_LIQUIDATABLE,
            "the fee pool is not liquidated",
        )
        require(
            fund_inventory or self.risk(account).liquidatable,
            ErrorCode.NOT_LIQUIDATABLE,
            "account is above maintenance",
        )
        require(
            not fund_inventory or tx.maker is not None,
            ErrorCode.NOT_LIQUIDATABLE,
            "the insurance fund closes its positions against resting orders",
        )
        delta = self._closing_delta(account, m, tx.size)
        bankrupt = self._bankruptcy_receipt(account, market, delta)
        if tx.maker is None:
            require(tx.price == 0, ErrorCode.INVALID_FIELD, "an insurance takeover has no price")
            counterparty, receipt = self._takeover(account, market, delta)
            maker_fee = 0
        else:
            maker = tx.maker
            require(
                maker.order.is_buy == (delta < 0),
                ErrorCode.INVALID_FIELD,
                "maker on the wrong side",
            )
            require(
                maker.order.tif in (TimeInForce.GTT, TimeInForce.POST_ONLY)
                and maker.order.kind not in MARKET_KINDS,
                ErrorCode.INVALID_FIELD,
                "only resting limit orders can be makers",
            )
            market.check_price(tx.price)
            self._check_order(maker, market, tx.timestamp_ms, tx.size, verify)
            spread = market.max_liquidation_spread_ppm
            if delta < 0:
                require(
                    tx.price <= maker.order.price, ErrorCode.PRICE_LIMIT, "above the maker's limit"
                )
                require(
                    tx.price * PPM >= oracle * (PPM - spread),
                    ErrorCode.PRICE_LIMIT,
                    "beyond the liquidation spread",
                )
            else:
                require(
                    tx.price >= maker.order.price, ErrorCode.PRICE_LIMIT, "below the maker's limit"
                )
                require(
                    tx.price * PPM <= oracle * (PPM + spread),
                    ErrorCode.PRICE_LIMIT,
                    "beyond the liquidation spread",
                )
            quote = market.quote(tx.size, tx.price)
            receipt = quote if delta < 0 else -quote
            require(
                fund_inventory or receipt >= bankrupt,
                ErrorCode.PRICE_LIMIT,
                "worse than the bankruptcy price",
            )
            counterparty = self._user_clone(maker.order.owner, maker.order.subaccount)
            require(
                counterparty.account_id != account.account_id,
                ErrorCode.SELF_TRADE,
                "self-liquidation",
            )
            old = counterparty.size(m)
            self._check_reduce_only(maker, old, tx.size)
            self._change_position(counterparty, m, -delta, receipt)
            maker_fee = self._fee(quote, market.maker_fee_ppm)
            counterparty.collateral -= maker_fee
            self._check_after_trade(counterparty, m, old, tx.timestamp_ms)
        self._change_position(account, m, delta, -receipt)
        fee = 0
        if tx.maker is not None and not fund_inventory:
            nominal = self._fee(abs(receipt), market.liquidation_fee_ppm)
            fee = max(0, min(nominal, self.risk(account).value))
        account.collateral -= fee
        touched = [account, counterparty]
        if fee:
            fund = self.account(INSURANCE_FUND_ID).clone()
            fund.collateral += fee
            touched.append(fund)
        if maker_fee:
            fees = self.account(FEE_POOL_ID).clone()
            fees.collateral += maker_fee
            touched.append(fees)
        self._commit(touched)
        if tx.maker is not None:
            self._commit_fill(tx.maker, tx.size)
        return (Liquidated(account.account_id, counterparty.account_id, m, delta, receipt, fee),)

    def _deleverage(self, tx: Deleverage) -> tuple[Event, ...]:
        market = self.markets.get(tx.market_id)
        m = market.market_id
        self._oracle_price(m, tx.timestamp_ms)
        account = self._settled_clone(tx.account_id)
        offset = self._settled_clone(tx.offset_account_id)
        fund_deficit = account.account_id == INSURANCE_FUND_ID
        require(
            (fund_deficit or not account.is_system) and not offset.is_system,
            ErrorCode.NOT_DELEVERAGEABLE,
            "the fee pool is not deleveraged, and protocol accounts do not offset",
        )
        require(
            account.account_id != offset.account_id, ErrorCode.NOT_DELEVERAGEABLE, "same account"
        )
        require(
            self.risk(account).value < 0, ErrorCode.NOT_DELEVERAGEABLE, "account is not bankrupt"
        )
        delta = self._closing_delta(account, m, tx.size)
        held = offset.size(m)
        require(
            held != 0 and (held > 0) == (delta > 0) and abs(held) >= tx.size,
            ErrorCode.NOT_DELEVERAGEABLE,
            "offset account lacks an opposite position",
        )
        if not fund_deficit:
            try:
                self._takeover(account, market, delta)
            except CoreError as exc:
                if exc.code != ErrorCode.INSURANCE_INSUFFICIENT:
                    raise
            else:
                raise CoreError(
                    ErrorCode.NOT_DELEVERAGEABLE, "the insurance fund can cover this account"
                )
        queue = ranking(
            self.accounts.values(), m, delta > 0, self.markets, self.prices, self.funding_index
        )
        require(
            bool(queue) and queue[0] == offset.account_id,
            ErrorCode.NOT_DELEVERAGEABLE,
            f"the deleveraging queue starts with {queue[:1]}, not {offset.account_id}",
        )
        receipt = self._bankruptcy_receipt(account, market, delta)
        self._change_position(account, m, delta, -receipt)
        self._change_position(offset, m, -delta, receipt)
        self._commit([account, offset])
        return (Deleveraged(account.account_id, offset.account_id, m, delta, receipt),)

    def _forced_withdrawal(self, tx: ForcedWithdrawal) -> tuple[Event, ...]:
        require(
            tx.request_id == self.next_forced_id,
            ErrorCode.DEPOSIT_ORDER,
            f"forced request {tx.request_id} out of order; next is {self.next_forced_id}",
        )
        require(len(tx.recipient) == 20, ErrorCode.INVALID_FIELD, "recipient is an address")
        account_id = self.ids.get((tx.owner, tx.subaccount))
        served = 0
        touched: list[Account] = []
        if account_id is not None and account_id >= FIRST_USER_ID:
            account = self._settled_clone(account_id)
            free = self.risk(account).free_collateral
            served = max(0, min(tx.amount, free))
            account.collateral -= served
            touched.append(account)
        self._commit(touched)
        self.next_forced_id += 1
        self.total_withdrawn += served
        return (WithdrawalEmitted(account_id, tx.recipient, served, tx.request_id),)
