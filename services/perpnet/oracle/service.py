"""The oracle aggregator service: sources -> aggregate -> signed OraclePriceTick -> sequencer.

Every `tick_interval_s`, for each market, each configured oracle key signs the
observation of its own source (key i reads source i: several keys, several
independent signers). The aggregator keeps the fresh, non-outlying ones; with
a quorum, their lower median becomes an OraclePriceTick that is submitted to
the sequencer, published on topics.PRICES and served by GetPrice/StreamPrices.

Observations older than the oldest one of the last accepted tick are dropped
as stale: the core refuses a tick that would move a market's price time back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import grpc
import grpc.aio

from perpnet.core.crypto import PrivateKey
from perpnet.core.encoding import encode_tx
from perpnet.core.markets import DEFAULT_MARKETS, USD, Market
from perpnet.core.txs import OraclePriceTick, SignedPrice
from perpnet.core.typed_data import Domain
from perpnet.oracle import metrics
from perpnet.oracle.aggregator import Aggregate, Policy, aggregate
from perpnet.oracle.sources import (
    CsvReplay,
    NoisySource,
    Observation,
    RandomWalk,
    Reference,
    SourceParams,
    WalkParams,
)
from perpnet.proto.v1 import oracle_pb2, oracle_pb2_grpc
from perpnet.runtime import topics
from perpnet.runtime.clock import now_ms
from perpnet.runtime.config import ConfigError, Range, Seconds, env_name
from perpnet.runtime.follower import ExchangeSettings
from perpnet.runtime.grpc_server import Service, run_service
from perpnet.runtime.redis import StreamGroup, connect, ping
from perpnet.runtime.sequencer_client import Accepted, SequencerClient

START_PRICES = {"BTC-USD": 60_000 * USD, "ETH-USD": 3_000 * USD, "SOL-USD": 150 * USD}
PRICES_MAXLEN = 100_000


def default_keys() -> tuple[PrivateKey, ...]:
    """The devnet's deterministic oracle keys (what `perpnet devnet` gives the sequencer)."""
    from perpnet.devnet.plan import oracle_keys

    return oracle_keys()


@dataclass(frozen=True, kw_only=True)
class OracleSettings(ExchangeSettings):
    """The exchange's settings (domain, PERPNET_ORACLE_QUORUM as the core's) and the sources."""

    keys: str = ""  # comma-separated 0x secrets, one signer per source; default: the devnet's
    markets: str = ""  # comma-separated market ids; default: every market
    tick_interval_s: Annotated[float, Range(0.05, 3600)] = 1.0
    max_age_s: Annotated[float, Range(0.1, 3600)] = 5.0  # staleness limit
    max_deviation_ppm: Annotated[int, Range(0, 1_000_000)] = 20_000  # outlier rejection
    seed: int = 1
    replay_csv: str = ""  # offset_ms,market,price rows; default: seeded random walks
    noise_ppm: Annotated[int, Range(0, 1_000_000)] = 300
    update_ms: Annotated[int, Range(1, 3_600_000)] = 500
    outage_prob: Annotated[float, Range(0, 1)] = 0.002
    outlier_prob: Annotated[float, Range(0, 1)] = 0.002
    submit_timeout_s: Seconds = 5.0

    def signer_keys(self) -> tuple[PrivateKey, ...]:
        if not self.keys.strip():
            return default_keys()
        try:
            return tuple(
                PrivateKey(bytes.fromhex(part.strip().removeprefix("0x")))
                for part in self.keys.split(",")
                if part.strip()
            )
        except Exception:
            raise ConfigError(f"{env_name(self.service, 'keys')}: not 0x secrets") from None

    def market_list(self) -> tuple[Market, ...]:
        if not self.markets.strip():
            return DEFAULT_MARKETS
        by_id = {m.market_id: m for m in DEFAULT_MARKETS}
        try:
            return tuple(by_id[int(part)] for part in self.markets.split(",") if part.strip())
        except (KeyError, ValueError):
            raise ConfigError(
                f"{env_name(self.service, 'markets')}={self.markets!r}: unknown market"
            ) from None

    def policy(self) -> Policy:
        return Policy(round(self.max_age_s * 1000), self.max_deviation_ppm, self.oracle_quorum)


@dataclass(frozen=True, slots=True)
class Feed:
    """One market: its sources, each read by one signer."""

    market: Market
    sources: tuple[tuple[PrivateKey, NoisySource], ...]


def build_feeds(settings: OracleSettings) -> tuple[Feed, ...]:
    """Sources for every configured market, deterministic in the seed."""
    keys = settings.signer_keys()
    params = SourceParams(
        settings.noise_ppm,
        settings.update_ms,
        settings.outage_prob,
        outlier_prob=settings.outlier_prob,
    )
    feeds = []
    for market in settings.market_list():
        reference: Reference
        if settings.replay_csv:
            reference = CsvReplay.load(Path(settings.replay_csv), market.symbol)
        else:
            start = START_PRICES.get(market.symbol, 100 * USD)
            walk = WalkParams(start=start, tick=market.tick_size)
            reference = RandomWalk(walk, seed=settings.seed * 1000 + market.market_id)
        sources = tuple(
            (
                key,
                NoisySource(
                    f"source-{i}",
                    reference,
                    market.tick_size,
                    seed=settings.seed * 1_000_000 + market.market_id * 1000 + i,
                    params=params,
                ),
            )
            for i, key in enumerate(keys)
        )
        feeds.append(Feed(market, sources))
    return tuple(feeds)


def build_tick(
    feed: Feed, result: Aggregate, now_ms: int, domain: Domain
) -> OraclePriceTick | None:
    """The signed tick for an aggregate (None without a quorum)."""
    if result.price is None:
        return None
    keys = {source.name: key for key, source in feed.sources}
    observations = tuple(
        SignedPrice.create(keys[o.source], feed.market.market_id, o.price, o.timestamp_ms, domain)
        for o in result.included
    )
    return OraclePriceTick(now_ms, feed.market.market_id, result.price, observations)


class OracleServicer(oracle_pb2_grpc.OracleServicer):
    def __init__(self, service: OracleService) -> None:
        self.service = service

    async def GetPrice(  # noqa: N802 - the proto's name
        self, request: oracle_pb2.GetPriceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> oracle_pb2.PriceTick:
        tick = self.service.latest.get(request.market_id)
        if tick is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no accepted price for market {request.market_id} yet"
            )
        assert tick is not None
        return tick

    async def StreamPrices(  # noqa: N802 - the proto's name
        self, request: oracle_pb2.StreamPricesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[oracle_pb2.PriceTick]:
        wanted = set(request.market_ids)
        queue: asyncio.Queue[oracle_pb2.PriceTick] = asyncio.Queue(maxsize=1000)
        self.service.subscribers.add(queue)
        stopping = asyncio.create_task(self.service.stopping.wait())
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                await asyncio.wait((getter, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                tick = getter.result()
                if not wanted or tick.market_id in wanted:
                    yield tick
        finally:
            stopping.cancel()
            self.service.subscribers.discard(queue)


class OracleService(Service[OracleSettings]):
    def __init__(self, settings: OracleSettings) -> None:
        super().__init__(settings)
        self.feeds = build_feeds(settings)
        self.domain = settings.exchange_config().domain
        self.policy = settings.policy()
        self.latest: dict[int, oracle_pb2.PriceTick] = {}
        self.price_times: dict[int, int] = {}  # oldest observation of the last accepted tick
        self.subscribers: set[asyncio.Queue[oracle_pb2.PriceTick]] = set()
        self.started_ms = now_ms()
        self._loop: asyncio.Task[None] | None = None

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        oracle_pb2_grpc.add_OracleServicer_to_server(  # type: ignore[no-untyped-call]
            OracleServicer(self), server
        )
        return ("perpnet.v1.Oracle",)

    async def start(self) -> None:
        self.redis = connect(self.settings.redis_url)
        self.resources.push_async_callback(self.redis.aclose)
        self.prices = StreamGroup(self.redis, topics.PRICES, "", "oracle")
        self.sequencer = SequencerClient(
            self.settings.peer("sequencer"), self.settings.submit_timeout_s
        )
        self.resources.push_async_callback(self.sequencer.close)
        self._loop = asyncio.create_task(self._run())

    async def ready(self) -> bool:
        return await ping(self.redis) and await self.sequencer.serving()

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        interval = self.settings.tick_interval_s
        while not self.stopping.is_set():
            started = time.monotonic()
            for feed in self.feeds:
                try:
                    await self.tick(feed, now_ms())
                except Exception:
                    self.log.exception("tick failed", extra={"market": feed.market.market_id})
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def observe(self, feed: Feed, now_ms: int) -> Aggregate:
        """Each source's observation of `feed` (source time counts from start-up), aggregated."""
        t = now_ms - self.started_ms
        observations: list[Observation | tuple[str, None]] = []
        for _key, source in feed.sources:
            obs = source.observe(t)
            observations.append(
                (source.name, None)
                if obs is None
                else replace(obs, timestamp_ms=self.started_ms + obs.timestamp_ms)
            )
        not_before = self.price_times.get(feed.market.market_id, 0)
        return aggregate(observations, now_ms, self.policy, not_before)

    async def tick(self, feed: Feed, now_ms: int) -> None:
        market = feed.market.market_id
        label = str(market)
        result = self.observe(feed, now_ms)
        metrics.LIVE_SOURCES.labels(label).set(len(result.included))
        for _source, reason in result.rejected:
            metrics.REJECTED.labels(label, reason.value).inc()
        last = self.price_times.get(market)
        if last is not None:
            metrics.STALENESS.labels(label).set(max(0, now_ms - last) / 1000)
        tick = build_tick(feed, result, now_ms, self.domain)
        if tick is None:
            metrics.TICKS.labels(label, "no_quorum").inc()
            return
        encoded = encode_tx(tick)
        try:
            outcome = await self.sequencer.submit(encoded)
        except grpc.aio.AioRpcError as exc:
            metrics.TICKS.labels(label, "unavailable").inc()
            self.log.warning("sequencer unavailable", extra={"error": exc.code().name})
            return
        if not isinstance(outcome, Accepted):
            metrics.TICKS.labels(label, "refused").inc()
            self.log.warning(
                "tick refused",
                extra={"market": market, "code": outcome.code, "why": outcome.message},
            )
            return
        metrics.TICKS.labels(label, "accepted").inc()
        metrics.PRICE.labels(label).set(tick.price)
        oldest = result.oldest_ms or now_ms
        self.price_times[market] = oldest
        metrics.STALENESS.labels(label).set(max(0, now_ms - oldest) / 1000)
        message = oracle_pb2.PriceTick(
            market_id=market, price=str(tick.price), timestamp_ms=now_ms, tx=encoded
        )
        self.latest[market] = message
        for queue in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)
        try:
            await self.prices.add(
                {"market_id": market, "price": str(tick.price), "tx": encoded},
                maxlen=PRICES_MAXLEN,
            )
        except Exception as exc:  # Redis is a feed for the gateway; the tick is already in L2
            self.log.warning("publishing the tick failed", extra={"error": repr(exc)})


def main() -> int:
    return run_service(OracleService, OracleSettings, "oracle")
