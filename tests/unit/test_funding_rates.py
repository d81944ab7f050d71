"""Premium samples and interval rates, with hand-computed figures."""

from __future__ import annotations

import pytest

from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.funding import PremiumSampler, interval_rate, premium_ppb
from perpnet.core.markets import USD, MarketSet

BTC = MarketSet().get(0)
INDEX = 50_000 * USD


def test_impact_bid_above_index_is_a_positive_premium() -> None:
    # bid 50,050 vs index 50,000: +50/50,000 = +0.1 % = 1,000,000 ppb
    assert premium_ppb(50_050 * USD, 50_100 * USD, INDEX) == 1_000_000


def test_impact_ask_below_index_is_a_negative_premium() -> None:
    # ask 49,975 vs index 50,000: -25/50,000 = -0.05 % = -500,000 ppb
    assert premium_ppb(49_950 * USD, 49_975 * USD, INDEX) == -500_000


def test_book_straddling_the_index_has_no_premium() -> None:
    assert premium_ppb(49_990 * USD, 50_010 * USD, INDEX) == 0


def test_a_thin_side_counts_as_the_index() -> None:
    assert premium_ppb(None, 49_975 * USD, INDEX) == -500_000
    assert premium_ppb(50_050 * USD, None, INDEX) == 1_000_000
    assert premium_ppb(None, None, INDEX) == 0


def test_premium_rounds_toward_zero() -> None:
    # +1 quantum over 50,000 USD = 1e-6/5e4 = 2e-11 -> 0.02 ppb -> 0
    assert premium_ppb(INDEX + 1, None, INDEX) == 0
    assert premium_ppb(None, INDEX - 1, INDEX) == 0


def test_no_index_price_is_refused() -> None:
    with pytest.raises(CoreError) as exc:
        premium_ppb(1, 2, 0)
    assert exc.value.code == ErrorCode.NO_PRICE


def test_interval_rate_is_the_mean_clamped() -> None:
    assert interval_rate(BTC, [1_000_000, 2_000_000, -600_000]) == 800_000
    assert interval_rate(BTC, [-1, -2]) == -1  # -1.5 rounds toward zero
    assert interval_rate(BTC, []) == 0
    # the clamp is 1 % = 10,000,000 ppb per interval
    assert interval_rate(BTC, [50_000_000] * 3) == 10_000_000
    assert interval_rate(BTC, [-50_000_000]) == -10_000_000


def test_sampler_closes_intervals() -> None:
    sampler = PremiumSampler(BTC)
    sampler.sample(50_050 * USD, 50_100 * USD, INDEX)
    sampler.sample(50_000 * USD, 50_100 * USD, INDEX)
    assert sampler.close_interval() == 500_000
    assert sampler.samples == []
    assert sampler.close_interval() == 0
