"""Build signed transactions with little ceremony: for tests, benchmarks and load.

A `Desk` holds the oracle keys and a monotonically advancing clock, and signs
what traders and oracles would sign, so a scenario reads as the story it tells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from perpnet.core.crypto import PrivateKey
from perpnet.core.markets import MarketSet
from perpnet.core.orders import Order, OrderKind, SelfTrade, SignedOrder, TimeInForce
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.core.txs import (
    Deposit,
    FundingTick,
    OraclePriceTick,
    SignedPrice,
    Trade,
    Transfer,
    Withdraw,
)
from perpnet.core.typed_data import Domain

ORACLE_KEYS = tuple(PrivateKey.from_seed(f"oracle-{i}".encode()) for i in range(3))


def trader(name: str) -> PrivateKey:
    return PrivateKey.from_seed(f"trader-{name}".encode())


def config(
    markets: MarketSet | None = None,
    quorum: int = 2,
    funding_interval_ms: int = 60_000,
    price_age_ms: int = 120_000,
) -> ExchangeConfig:
    """A scenario configuration: funding every interval, each tick up to the full clamp.

    Prices stay fresh for 120 s (30 s by default in ExchangeConfig) so that a
    scenario can run a funding tick a minute after its last price tick.
    """
    return ExchangeConfig(
        markets=markets or MarketSet(),
        domain=Domain(),
        oracle_signers=frozenset(k.address for k in ORACLE_KEYS),
        oracle_quorum=quorum,
        max_price_age_ms=price_age_ms,
        min_funding_interval_ms=funding_interval_ms,
        funding_period_ms=max(1, funding_interval_ms),
    )


@dataclass
class Desk:
    """A scenario's clock and signers, bound to one exchange configuration."""

    config: ExchangeConfig = field(default_factory=config)
    now_ms: int = 1_000
    _deposits: int = 0
    _nonces: dict[bytes, int] = field(default_factory=dict)

    def state(self) -> ExchangeState:
        return ExchangeState(self.config)

    def tick(self, step_ms: int = 1) -> int:
        self.now_ms += step_ms
        return self.now_ms

    def deposit(self, key: PrivateKey | bytes, amount: int, subaccount: int = 0) -> Deposit:
        owner = key.address if isinstance(key, PrivateKey) else key
        tx = Deposit(self.tick(), self._deposits, owner, subaccount, amount)
        self._deposits += 1
        return tx

    def price(self, market_id: int, price: int, signers: int = 3) -> OraclePriceTick:
        ts = self.tick()
        observations = tuple(
            SignedPrice.create(k, market_id, price, ts, self.config.domain)
            for k in ORACLE_KEYS[:signers]
        )
        return OraclePriceTick(ts, market_id, price, observations)

    def funding(self, *rates: tuple[int, int], after_ms: int | None = None) -> FundingTick:
        step = self.config.min_funding_interval_ms if after_ms is None else after_ms
        return FundingTick(self.tick(step), tuple(rates))

    def order(
        self,
        key: PrivateKey,
        market_id: int,
        is_buy: bool,
        size: int,
        price: int,
        *,
        subaccount: int = 0,
        kind: OrderKind = OrderKind.LIMIT,
        tif: TimeInForce = TimeInForce.GTT,
        trigger_price: int = 0,
        reduce_only: bool = False,
        self_trade: SelfTrade = SelfTrade.CANCEL_MAKER,
        expiry_ms: int = 2**62,
        nonce: int | None = None,
    ) -> SignedOrder:
        if nonce is None:
            nonce = self._next_nonce(key.address)
        order = Order(
            key.address,
            subaccount,
            market_id,
            is_buy,
            size,
            price,
            kind,
            tif,
            trigger_price,
            reduce_only,
            self_trade,
            nonce,
            expiry_ms,
        )
        return SignedOrder.create(order, key, self.config.domain)

    def trade(self, maker: SignedOrder, taker: SignedOrder, size: int | None = None) -> Trade:
        fill = min(maker.order.size, taker.order.size) if size is None else size
        return Trade(self.tick(), maker, taker, fill, maker.order.price)

    def cross(
        self,
        maker: PrivateKey,
        taker: PrivateKey,
        market_id: int,
        taker_buys: bool,
        size: int,
        price: int,
    ) -> Trade:
        """A maker's resting limit and a taker's IOC that fill each other completely."""
        resting = self.order(maker, market_id, not taker_buys, size, price)
        incoming = self.order(taker, market_id, taker_buys, size, price, tif=TimeInForce.IOC)
        return self.trade(resting, incoming)

    def withdraw(self, key: PrivateKey, amount: int, nonce: int, subaccount: int = 0) -> Withdraw:
        tx = Withdraw(self.tick(), key.address, subaccount, amount, key.address, nonce, 2**62)
        return tx.signed(key, self.config.domain)

    def transfer(
        self,
        key: PrivateKey,
        to: bytes,
        amount: int,
        nonce: int,
        subaccount: int = 0,
        to_subaccount: int = 0,
    ) -> Transfer:
        tx = Transfer(self.tick(), key.address, subaccount, to, to_subaccount, amount, nonce, 2**62)
        return tx.signed(key, self.config.domain)

    def _next_nonce(self, owner: bytes) -> int:
        nonce = self._nonces.get(owner, 0)
        self._nonces[owner] = nonce + 1
        return nonce
