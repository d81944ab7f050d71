"""Oracle sources (deterministic models) and the aggregation rule, and the tick the core accepts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.txs import OraclePriceTick
from perpnet.oracle.aggregator import Policy, Rejection, aggregate, lower_median
from perpnet.oracle.service import Feed, OracleService, OracleSettings, build_feeds, build_tick
from perpnet.oracle.sources import (
    CsvReplay,
    NoisySource,
    Observation,
    RandomWalk,
    Regime,
    SourceParams,
    WalkParams,
)
from perpnet.proto.v1 import oracle_pb2, oracle_pb2_grpc, sequencer_pb2
from perpnet.runtime import topics
from perpnet.runtime.channels import open_channel
from perpnet.testkit import ORACLE_KEYS, Desk
from services.test_bridge import serving
from services.test_sequencer import running, sequencer_env

TICK = USD


def walk(seed: int = 7, **kw: object) -> RandomWalk:
    return RandomWalk(WalkParams(start=60_000 * USD, tick=TICK, **kw), seed)  # type: ignore[arg-type]


def test_random_walk_is_deterministic_integer_and_on_tick() -> None:
    a, b = walk(), walk()
    times = [0, 250, 10_000, 3_600_000, 1_000]  # out of order on purpose
    prices = [a.price_at(t) for t in times]
    assert prices == [b.price_at(t) for t in times]
    assert all(isinstance(p, int) and p % TICK == 0 and p >= TICK for p in prices)
    assert prices[0] == 60_000 * USD
    assert walk(seed=8).price_at(3_600_000) != prices[3]


def test_random_walk_switches_regimes_and_jumps() -> None:
    calm, hot = Regime(100, 5.0), Regime(20_000, 5.0)
    w = walk(regimes=(calm, hot), jumps_per_hour=3600.0, jump_ppm=50_000)
    seen = set()
    for t in range(0, 600_000, 250):
        w.price_at(t)
        seen.add(w.regime)
    assert seen == {0, 1}
    quiet = walk(regimes=(Regime(100, 1e9),), jumps_per_hour=0.0)
    moves = [abs(quiet.price_at(t + 1000) - quiet.price_at(t)) for t in range(0, 60_000, 1000)]
    assert max(moves) < 60_000 * USD * 0.001  # 100 ppm/sqrt(s): tiny steps, no jumps


def test_csv_replay(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("offset_ms,market,price\n0,BTC-USD,100\n1000,BTC-USD,110\n0,ETH-USD,5\n")
    replay = CsvReplay.load(path, "btc-usd", loop=False)
    assert [replay.price_at(t) for t in (0, 999, 1000, 50_000)] == [100, 100, 110, 110]
    looped = CsvReplay.load(path, "BTC-USD")
    assert looped.price_at(1001) == 100  # the series starts again
    with pytest.raises(ValueError):
        CsvReplay.of([])


def test_sources_are_independent_pure_and_age_during_outages() -> None:
    ref = walk()
    params = SourceParams(500, 500, outage_prob=0.05, outage_updates=10, outlier_prob=0.0)
    a = NoisySource("a", ref, TICK, seed=1, params=params)
    again = NoisySource("a", walk(), TICK, seed=1, params=params)
    b = NoisySource("b", ref, TICK, seed=2, params=params)
    obs_a = [a.observe(t) for t in range(0, 120_000, 500)]
    assert obs_a == [again.observe(t) for t in range(0, 120_000, 500)]
    assert obs_a != [b.observe(t) for t in range(0, 120_000, 500)]
    stale = [t - o.timestamp_ms for t, o in zip(range(0, 120_000, 500), obs_a, strict=True) if o]
    assert max(stale) >= 500  # an outage served an old price
    assert all(abs(o.price - ref.price_at(o.timestamp_ms)) < o.price * 0.01 for o in obs_a if o)
    wild = NoisySource("w", ref, TICK, seed=3, params=SourceParams(outlier_prob=1.0))
    seen = wild.observe(10_000)
    assert seen is not None and abs(seen.price - ref.price_at(10_000)) > seen.price * 0.05


def obs(source: str, price: int, ts: int = 1_000) -> Observation:
    return Observation(source, price, ts)


def test_aggregate_rejects_stale_outliers_and_needs_a_quorum() -> None:
    policy = Policy(max_age_ms=500, max_deviation_ppm=10_000, quorum=3)
    fresh = [obs("a", 100_000), obs("b", 100_500), obs("c", 99_800), obs("d", 150_000)]
    result = aggregate([*fresh, obs("e", 100_100, ts=400), ("f", None)], 1_000, policy)
    assert result.price == 100_000  # lower median of 99_800, 100_000, 100_500
    assert {o.source for o in result.included} == {"a", "b", "c"}
    assert dict(result.rejected) == {
        "d": Rejection.OUTLIER,
        "e": Rejection.STALE,
        "f": Rejection.MISSING,
    }
    assert result.oldest_ms == 1_000
    short = aggregate(fresh[:2], 1_000, policy)
    assert short.price is None and len(short.included) == 2
    newer_only = aggregate(fresh, 1_000, Policy(500, 10_000, 1), not_before_ms=1_001)
    assert newer_only.price is None and {r for _, r in newer_only.rejected} == {Rejection.STALE}


def test_lower_median_is_the_cores_rule() -> None:
    assert lower_median([3, 1, 2]) == 2
    assert lower_median([4, 1, 3, 2]) == 2
    assert lower_median([5]) == 5


def test_the_tick_of_an_aggregate_is_accepted_by_the_core() -> None:
    desk = Desk()
    state = desk.state()
    settings = OracleSettings.from_env(
        "oracle",
        {
            "PERPNET_ORACLE_KEYS": ",".join("0x" + k.secret.hex() for k in ORACLE_KEYS),
            "PERPNET_ORACLE_MARKETS": "0",
            "PERPNET_ORACLE_OUTAGE_PROB": "0",
            "PERPNET_ORACLE_OUTLIER_PROB": "0",
        },
    )
    [feed] = build_feeds(settings)
    assert isinstance(feed, Feed) and len(feed.sources) == 3
    domain = desk.config.domain
    for now in (1_000, 2_000, 3_000):
        observations = [source.observe(now) for _key, source in feed.sources]
        result = aggregate([o for o in observations if o], now, settings.policy())
        tick = build_tick(feed, result, now, domain)
        assert tick is not None and tick.price == result.price
        state.apply(tick)
        assert state.prices[0] == tick.price
    forged = build_tick(feed, result, 4_000, domain)
    assert forged is not None
    bad = type(forged)(4_000, 0, forged.price + TICK, forged.observations)
    with pytest.raises(CoreError):
        state.apply(bad)


def test_the_service_ticks_into_the_sequencer_and_serves_prices(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_service(tmp_path, redis_url))


async def _service(tmp_path: Path, redis_url: str) -> None:
    env = sequencer_env(tmp_path / "perpnet.db", redis_url)
    async with running(env) as (sequencer, stub):
        settings = OracleSettings.from_env(
            "oracle",
            {
                **env,
                "PERPNET_SEQUENCER_ADDR": f"127.0.0.1:{sequencer.grpc_port}",
                "PERPNET_ORACLE_KEYS": ",".join("0x" + k.secret.hex() for k in ORACLE_KEYS),
                "PERPNET_ORACLE_TICK_INTERVAL_S": "0.1",
                "PERPNET_ORACLE_MARKETS": "0,1",
            },
        )
        oracle = OracleService(settings)
        async with serving(oracle), open_channel(f"127.0.0.1:{oracle.grpc_port}") as channel:
            prices = oracle_pb2_grpc.OracleStub(channel)  # type: ignore[no-untyped-call]
            stream = prices.StreamPrices(oracle_pb2.StreamPricesRequest(market_ids=[1]))
            streamed = await asyncio.wait_for(stream.read(), 10)
            assert streamed.market_id == 1 and int(streamed.price) > 0
            stream.cancel()
            tick = await prices.GetPrice(oracle_pb2.GetPriceRequest(market_id=0))
            decoded = decode_tx(tick.tx, Desk().config.domain)
            assert isinstance(decoded, OraclePriceTick) and decoded.price == int(tick.price)
            assert len(decoded.observations) >= 2
            state = await stub.GetState(sequencer_pb2.GetStateRequest())
            assert state.last_seq >= 2  # the ticks are in the L2 log
            client = aioredis.Redis.from_url(redis_url)
            try:
                assert await client.xlen(topics.PRICES) >= 2
            finally:
                await client.aclose()
