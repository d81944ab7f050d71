"""What applying a transaction did, for services, metrics and the batch's public inputs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DepositCredited:
    deposit_id: int
    account_id: int
    amount: int


@dataclass(frozen=True, slots=True)
class WithdrawalEmitted:
    """Collateral that leaves L2: claimable on L1 once its batch is verified."""

    account_id: int | None
    recipient: bytes
    amount: int
    forced_request_id: int | None


@dataclass(frozen=True, slots=True)
class Filled:
    market_id: int
    maker_account: int
    taker_account: int
    maker_is_buy: bool
    size: int
    price: int
    maker_fee: int
    taker_fee: int


@dataclass(frozen=True, slots=True)
class PriceUpdated:
    market_id: int
    price: int


@dataclass(frozen=True, slots=True)
class FundingApplied:
    market_id: int
    delta: int
    index: int


@dataclass(frozen=True, slots=True)
class Liquidated:
    account_id: int
    counterparty: int
    market_id: int
    delta: int
    receipt: int
    fee: int


@dataclass(frozen=True, slots=True)
class Deleveraged:
    account_id: int
    offset_account_id: int
    market_id: int
    delta: int
    receipt: int


Event = (
    DepositCredited
    | WithdrawalEmitted
    | Filled
    | PriceUpdated
    | FundingApplied
    | Liquidated
    | Deleveraged
)
