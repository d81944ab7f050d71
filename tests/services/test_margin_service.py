"""The margin engine with a real sequencer and matcher: after an oracle move it liquidates an
account into the insurance fund, and it submits funding ticks sampled from the matcher's book."""

from __future__ import annotations

import asyncio
from pathlib import Path

from perpnet.core.markets import USD
from perpnet.core.txs import FundingTick, Liquidate
from perpnet.proto.v1 import margin_pb2
from runtime.test_grpc_service import eventually

from .test_matcher_service import BTC, ONE, PRICE, clients, fund, services, stack_env
from .test_matcher_service import MAKER as BOB
from .test_matcher_service import TAKER as ALICE


def test_liquidation_after_an_oracle_move_and_a_funding_tick(
    tmp_path: Path, redis_url: str
) -> None:
    env = stack_env(
        tmp_path,
        redis_url,
        PERPNET_MARGIN_LIQUIDATION_INTERVAL_S="0.1",
        PERPNET_MARGIN_FUNDING_SAMPLE_S="0.1",
        PERPNET_MARGIN_FUNDING_INTERVAL_S="0.5",
    )
    asyncio.run(_liquidation(env))


async def _liquidation(env: dict[str, str]) -> None:
    async with services(env), clients(env) as stack:
        await fund(stack, BOB, ALICE, amount=10_000 * USD)
        await stack.place(stack.now().order(BOB, BTC, False, ONE, PRICE))
        await stack.place(stack.now().order(ALICE, BTC, True, ONE, PRICE))  # long 1 BTC on 10k

        async def funded() -> bool:
            return any(isinstance(tx, FundingTick) for tx in await stack.log())

        await eventually(funded)

        await stack.submit(stack.now().price(BTC, 41_000 * USD))  # Alice below maintenance

        async def liquidated() -> list[Liquidate]:
            return [tx for tx in await stack.log() if isinstance(tx, Liquidate)]

        async def done() -> bool:
            return bool(await liquidated())

        await eventually(done)
        [takeover] = await liquidated()
        assert (takeover.market_id, takeover.size, takeover.maker) == (BTC, ONE, None)
        request = margin_pb2.GetAccountRiskRequest(owner=ALICE.address, subaccount=0)

        async def safe() -> bool:
            alice = await stack.margin.GetAccountRisk(request)
            return not alice.liquidatable and alice.maintenance == "0"

        await eventually(safe)
        fund_risk = await stack.margin.GetAccountRisk(
            margin_pb2.GetAccountRiskRequest(owner=bytes(20), subaccount=0)
        )
        assert int(fund_risk.maintenance) > 0  # the fund now holds the position
