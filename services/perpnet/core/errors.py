"""Typed rejections: every refused input says why, and changes nothing."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable machine-readable reasons a transaction or order is refused."""

    INVALID_FIELD = "INVALID_FIELD"
    UNKNOWN_MARKET = "UNKNOWN_MARKET"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    EXPIRED = "EXPIRED"
    REPLAY = "REPLAY"
    BAD_NONCE = "BAD_NONCE"
    OFF_TICK = "OFF_TICK"
    OFF_STEP = "OFF_STEP"
    BELOW_MIN_SIZE = "BELOW_MIN_SIZE"
    PRICE_LIMIT = "PRICE_LIMIT"
    OVERFILL = "OVERFILL"
    SELF_TRADE = "SELF_TRADE"
    REDUCE_ONLY = "REDUCE_ONLY"
    POST_ONLY = "POST_ONLY"
    FOK_UNFILLED = "FOK_UNFILLED"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    INSUFFICIENT_COLLATERAL = "INSUFFICIENT_COLLATERAL"
    ISOLATED_MARKET = "ISOLATED_MARKET"
    NOT_LIQUIDATABLE = "NOT_LIQUIDATABLE"
    NOT_DELEVERAGEABLE = "NOT_DELEVERAGEABLE"
    INSURANCE_INSUFFICIENT = "INSURANCE_INSUFFICIENT"
    ORACLE_QUORUM = "ORACLE_QUORUM"
    ORACLE_STALE = "ORACLE_STALE"
    NO_PRICE = "NO_PRICE"
    FUNDING_CLAMP = "FUNDING_CLAMP"
    CLOCK = "CLOCK"
    DEPOSIT_ORDER = "DEPOSIT_ORDER"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    NOT_OWNER = "NOT_OWNER"
    ENCODING = "ENCODING"


class CoreError(Exception):
    """A refusal with a stable code and a human-readable reason."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


def require(condition: bool, code: ErrorCode, message: str) -> None:
    """Raise `CoreError` unless `condition` holds."""
    if not condition:
        raise CoreError(code, message)
