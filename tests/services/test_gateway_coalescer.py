"""Single orders placed at the same time share PlaceOrders calls, and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.orders import SignedOrder
from perpnet.gateway.errors import ApiError
from perpnet.gateway.grpc_backend import Coalescer
from perpnet.gateway.ports import OrderAck
from perpnet.testkit import Desk, trader

ALICE = trader("coalesced")


def orders(n: int) -> list[SignedOrder]:
    desk = Desk(now_ms=1_700_000_000_000)
    return [desk.order(ALICE, 0, True, 10**8, (50_000 + i) * 10**6) for i in range(n)]


class Matcher:
    """PlaceOrders: refuses every third order; records each call's orders; can be down."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []
        self.down = False

    async def place_many(self, batch: Sequence[SignedOrder]) -> list[OrderAck | Exception]:
        self.calls.append([o.hash for o in batch])
        await asyncio.sleep(0.01)
        if self.down:
            raise ApiError(503, "UNAVAILABLE", "matcher is unavailable, retry later")
        return [
            CoreError(ErrorCode.INSUFFICIENT_MARGIN, "no")
            if i % 3 == 2
            else OrderAck(o.hash, (), o.order.size, False, ())
            for i, o in enumerate(batch)
        ]


def test_concurrent_orders_share_calls_in_arrival_order_and_get_their_own_answers() -> None:
    async def main() -> None:
        matcher = Matcher()
        coalescer = Coalescer(matcher.place_many, limit=4, in_flight=1)
        signed = orders(9)
        got = await asyncio.gather(*(coalescer.place(o) for o in signed), return_exceptions=True)
        # the first goes alone at once; the others queued meanwhile go 4 at a time
        assert [len(c) for c in matcher.calls] == [1, 4, 4]
        assert [h for c in matcher.calls for h in c] == [o.hash for o in signed]
        answers = [(a.order_hash if isinstance(a, OrderAck) else type(a)) for a in got]
        expected = [
            CoreError if i % 3 == 2 else h for call in matcher.calls for i, h in enumerate(call)
        ]
        assert answers == expected

    asyncio.run(main())


def test_a_failed_call_fails_each_of_its_orders_and_the_next_call_goes_on() -> None:
    async def main() -> None:
        matcher = Matcher()
        coalescer = Coalescer(matcher.place_many, limit=10)
        first, second = orders(2)
        matcher.down = True
        with pytest.raises(ApiError) as down:
            await coalescer.place(first)
        assert down.value.status == 503
        matcher.down = False
        assert (await coalescer.place(second)).order_hash == second.hash

    asyncio.run(main())
