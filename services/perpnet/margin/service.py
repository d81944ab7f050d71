"""The margin engine service (gRPC perpnet.v1.Margin) and its risk loops.

It holds a replica of the exchange state fed by the sequencer's log
(perpnet.runtime.follower) and runs, besides the pre-trade checks:
- the liquidation loop: accounts below maintenance are taken over by the
  insurance fund; when the fund cannot absorb a bankrupt account, its
  position is deleveraged against the head of the core's ranking; a fund
  worth less than zero has its own positions deleveraged;
- funding: premium samples from the matcher's impact prices against the
  oracle price, and a FundingTick every `funding_interval_s`.
Every action is a transaction submitted to the sequencer, which re-checks
it: the replica may lag, the sequencer never applies a wrong liquidation.
The service keeps no state of its own: on restart it replays the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import grpc
import grpc.aio
from prometheus_client import Counter, Gauge, Histogram

from perpnet.core.accounts import INSURANCE_FUND_ID
from perpnet.core.encoding import decode_order
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.margin import Risk
from perpnet.core.txs import Deleverage, Liquidate, Tx
from perpnet.margin import risk
from perpnet.proto.v1 import margin_pb2, margin_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from perpnet.runtime.channels import open_channel
from perpnet.runtime.config import Range, Seconds
from perpnet.runtime.follower import (
    ExchangeSettings,
    Follower,
    RefusedError,
    repeat,
    sequencer_log,
    stamp,
    submit_stamped,
    sync_with_sequencer,
)
from perpnet.runtime.grpc_server import Service
from perpnet.runtime.redis import connect, ping
from perpnet.runtime.sequencer_client import SequencerClient

CHECKS = Counter(
    "perpnet_margin_checks", "Pre-trade checks by result (ok or ErrorCode).", ("result",)
)
CHECK_SECONDS = Histogram(
    "perpnet_margin_check_seconds",
    "Time to decide one pre-trade check on the replica.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
LIQUIDATIONS = Counter(
    "perpnet_margin_liquidations",
    "Risk transactions by kind (takeover, deleverage) and outcome (committed or ErrorCode).",
    ("kind", "outcome"),
)
LIQUIDATABLE = Gauge("perpnet_margin_liquidatable_accounts", "Accounts below maintenance seen.")
INSURANCE_FUND = Gauge(
    "perpnet_margin_insurance_fund_value", "The insurance fund's value (collateral quantums)."
)
INSURANCE_COLLATERAL = Gauge(
    "perpnet_margin_insurance_fund_collateral", "The insurance fund's collateral (quantums)."
)
FUNDING_TICKS = Counter("perpnet_margin_funding_ticks", "Funding ticks by outcome.", ("outcome",))
PREMIUM = Gauge("perpnet_margin_premium_ppb", "The last premium sample per market.", ("market",))
REPLICA_SEQ = Gauge("perpnet_margin_replica_seq", "The last log position the replica applied.")


@dataclass(frozen=True, kw_only=True)
class MarginSettings(ExchangeSettings):
    """PERPNET_MARGIN_<FIELD> or PERPNET_<FIELD>; intervals follow dYdX's defaults."""

    liquidation_interval_s: Seconds = 1.6
    max_liquidations: Annotated[int, Range(1, 10_000)] = 50  # accounts per loop iteration
    funding_sample_s: Seconds = 5.0
    funding_interval_s: Seconds = 60.0
    rpc_timeout_s: Seconds = 5.0


def _risk_message(account_id: int, r: Risk, as_of: int) -> margin_pb2.AccountRisk:
    return margin_pb2.AccountRisk(
        account_id=account_id,
        value=str(r.value),
        initial=str(r.initial),
        maintenance=str(r.maintenance),
        liquidatable=r.liquidatable,
        as_of_seq=as_of,
    )


class MarginServicer(margin_pb2_grpc.MarginServicer):
    def __init__(self, engine: MarginEngine) -> None:
        self.engine = engine

    async def CheckOrder(  # noqa: N802 - the name is the proto's
        self, request: margin_pb2.CheckOrderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> margin_pb2.CheckOrderReply:
        with CHECK_SECONDS.time():
            try:
                order = decode_order(request.order)
                others = [decode_order(data) for data in request.open_orders]
            except CoreError as exc:
                CHECKS.labels(exc.code.value).inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            follower = self.engine.follower
            verdict = risk.check_order(follower.state, order, others)
        CHECKS.labels("ok" if verdict.ok else verdict.reason).inc()
        reply = margin_pb2.CheckOrderReply(
            ok=verdict.ok,
            reason=verdict.reason,
            message=verdict.message,
            position=str(verdict.position),
        )
        if verdict.risk is not None and verdict.account_id is not None:
            reply.risk.CopyFrom(_risk_message(verdict.account_id, verdict.risk, follower.last_seq))
        return reply

    async def GetAccountRisk(  # noqa: N802 - the name is the proto's
        self,
        request: margin_pb2.GetAccountRiskRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> margin_pb2.AccountRisk:
        follower = self.engine.follower
        account_id = follower.state.account_id(request.owner, request.subaccount)
        if account_id is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"{ErrorCode.UNKNOWN_ACCOUNT}: no such account"
            )
        r = risk.account_risk(follower.state, follower.state.account(account_id))
        if r is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"{ErrorCode.NO_PRICE}: a market has no price"
            )
        return _risk_message(account_id, r, follower.last_seq)


class MarginEngine(Service[MarginSettings]):
    """The margin engine: a replica, a pre-trade check RPC and the risk loops."""

    def __init__(self, settings: MarginSettings) -> None:
        super().__init__(settings)
        self.config = settings.exchange_config()
        self.redis = connect(settings.redis_url)
        self.sequencer = SequencerClient(settings.peer("sequencer"), settings.rpc_timeout_s)
        self.matcher_channel = open_channel(settings.peer("matcher"))
        self.matcher = matcher_pb2_grpc.MatcherStub(self.matcher_channel)  # type: ignore[no-untyped-call]
        self.follower = Follower(self.config, self.redis, sequencer_log(self.sequencer))
        self.funding = risk.FundingDesk(self.config.markets)
        self.synced = False
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        margin_pb2_grpc.add_MarginServicer_to_server(MarginServicer(self), server)  # type: ignore[no-untyped-call]
        return ("perpnet.v1.Margin",)

    async def start(self) -> None:
        self.resources.push_async_callback(self.redis.aclose)
        self.resources.push_async_callback(self.sequencer.close)
        self.resources.push_async_callback(self.matcher_channel.close, None)
        stop = self.stopping
        s = self.settings
        self._tasks = [
            asyncio.create_task(self.follower.run(stop)),
            asyncio.create_task(self._sync_then_loop()),
            asyncio.create_task(repeat(s.funding_sample_s, self.sample_premiums, stop, "premium")),
        ]

    async def _sync_then_loop(self) -> None:
        if not await sync_with_sequencer(self.follower, self.sequencer, self.stopping):
            return
        self.synced = True
        self.log.info("replica synced", extra={"seq": self.follower.last_seq})
        s = self.settings
        await asyncio.gather(
            repeat(s.liquidation_interval_s, self.liquidate, self.stopping, "liquidations"),
            repeat(s.funding_interval_s, self.funding_tick, self.stopping, "funding"),
        )

    async def ready(self) -> bool:
        if not self.synced or self.follower.diverged is not None:
            return False
        return await ping(self.redis) and await self.sequencer.serving()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- actions ----------------------------------------------------------------------

    async def submit(self, tx: Tx, kind: str) -> int:
        """Submit a risk transaction and wait until the replica has applied it."""
        try:
            seq = await submit_stamped(self.sequencer, tx)
        except RefusedError as refused:
            LIQUIDATIONS.labels(kind, refused.code).inc()
            self.log.info("refused", extra={"kind": kind, "reason": refused.message})
            raise
        LIQUIDATIONS.labels(kind, "committed").inc()
        await self.follower.wait_for(seq, self.settings.rpc_timeout_s)
        return seq

    async def liquidate(self) -> None:
        """One pass: take over or deleverage every liquidatable account (bounded)."""
        follower = self.follower
        REPLICA_SEQ.set(follower.last_seq)
        found = risk.liquidatable(follower.state, self.settings.max_liquidations)
        LIQUIDATABLE.set(len(found))
        for account_id in found:
            for takeover in risk.takeovers(follower.state, account_id, stamp(follower)):
                await self._take_over(takeover)
        for tx in risk.fund_deficit(follower.state, stamp(follower)):
            await self._deleverage(tx)
        fund = follower.state.account(INSURANCE_FUND_ID)
        INSURANCE_COLLATERAL.set(fund.collateral)
        fund_risk = risk.account_risk(follower.state, fund)
        INSURANCE_FUND.set(fund.collateral if fund_risk is None else fund_risk.value)

    async def _take_over(self, tx: Liquidate) -> None:
        try:
            await self.submit(tx, "takeover")
        except RefusedError as refused:
            if refused.code != ErrorCode.INSURANCE_INSUFFICIENT:
                return
            state = self.follower.state
            offset = risk.deleverage(state, tx.account_id, tx.market_id, stamp(self.follower))
            if offset is not None:
                await self._deleverage(offset)

    async def _deleverage(self, tx: Deleverage) -> None:
        try:
            await self.submit(tx, "deleverage")
        except RefusedError:
            return  # logged and counted; the next pass looks again

    async def sample_premiums(self) -> None:
        """One premium sample per market with an oracle price, from the matcher's book."""
        state = self.follower.state
        for market in self.config.markets.markets:
            index = state.prices.get(market.market_id)
            if index is None:
                continue
            try:
                reply = await self.matcher.GetImpactPrices(
                    matcher_pb2.GetImpactPricesRequest(market_id=market.market_id),
                    timeout=self.settings.rpc_timeout_s,
                )
            except grpc.aio.AioRpcError as exc:
                self.log.debug("no impact prices", extra={"error": exc.code().name})
                return
            bid = int(reply.impact_bid) if reply.impact_bid else None
            ask = int(reply.impact_ask) if reply.impact_ask else None
            premium = self.funding.sample(market.market_id, bid, ask, index)
            PREMIUM.labels(market.symbol).set(premium)

    async def funding_tick(self) -> None:
        tick = self.funding.tick(self.follower.state, stamp(self.follower))
        if tick is None:
            return
        try:
            seq = await submit_stamped(self.sequencer, tick)
        except RefusedError as refused:
            FUNDING_TICKS.labels(refused.code).inc()
            self.log.warning("funding tick refused", extra={"reason": refused.message})
            return
        FUNDING_TICKS.labels("committed").inc()
        self.log.info("funding tick", extra={"seq": seq, "rates": list(tick.rates)})
