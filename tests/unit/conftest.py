"""Shared fixtures for the exchange state-machine scenario tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Tx
from perpnet.testkit import Desk

Reject = Callable[..., CoreError]


def _reject(
    state: ExchangeState,
    tx: Tx,
    code: ErrorCode,
    *,
    authenticated: bool = False,
    match: str | None = None,
) -> CoreError:
    """Apply `tx`, expect `code`, and check that the refusal changed nothing."""
    root, clock = state.root(), state.clock_ms
    with pytest.raises(CoreError) as info:
        state.apply(tx, authenticated=authenticated)
    assert info.value.code == code, info.value
    if match is not None:
        assert match in info.value.message, info.value.message
    assert state.root() == root
    assert state.clock_ms == clock
    return info.value


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
def reject() -> Reject:
    return _reject
