"""Kill -9 a container (sequencer, a prover worker, redis), start it again: nothing acknowledged
is lost.

While a client streams signed transfers through the gateway (recording every
acknowledgement: log position and transaction hash), the container is killed
with SIGKILL and started again. Then:
- every acknowledged transaction is in the sequencer's durable log (PostgreSQL);
- a resting order acknowledged before the kill is still open;
- the replicas caught up (the gateway shows the account's last acknowledged nonce);
- the pipeline went on: a batch holding the last acknowledged transaction is
  proven and verified on L1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from compose.conftest import Stack, Trader, wait_for
from perpnet.client.sdk import Client
from perpnet.core.orders import TimeInForce

pytestmark = pytest.mark.compose

BTC = 0
SIZE = 10**7


class Submitter(threading.Thread):
    """Transfers of one quantum, back to back; keeps what the gateway acknowledged."""

    def __init__(self, client: Client, to: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.to = to
        self.acked: list[tuple[int, str, int]] = []  # (seq, tx hash, nonce)
        self.refused = 0
        self.halt = threading.Event()

    def run(self) -> None:
        nonce: int | None = None
        while not self.halt.is_set():
            try:
                if nonce is None:
                    nonce = int(self.client.account()["nonce"])
                reply = self.client.transfer(self.to, 1, nonce=nonce)
                self.acked.append((int(reply["seq"]), str(reply["tx_hash"]), nonce))
                nonce += 1
            except Exception:  # the stack is down or restarting: not acknowledged
                self.refused += 1
                nonce = None  # re-read it: the last attempt may or may not have landed
                time.sleep(0.2)

    def acked_since(self, mark: int) -> int:
        return len(self.acked) - mark


@pytest.fixture(scope="module")
def pair(make_trader: Callable[[str, int], Trader], trader_usd: int) -> tuple[Trader, Trader]:
    return make_trader("carol", trader_usd), make_trader("dave", trader_usd)


def _kill_and_restart(stack: Stack, service: str) -> str:
    container = stack.containers(service)[0]
    stack.docker("kill", "--signal", "KILL", container)
    time.sleep(2.0)  # an outage, not a blip
    stack.docker("start", container)  # a no-op if the restart policy was quicker
    stack.wait_healthy(container, timeout=180)
    return container


@pytest.mark.parametrize("service", ["sequencer", "prover", "redis"])
def test_kill_restart_loses_nothing_acknowledged(
    stack: Stack, pair: tuple[Trader, Trader], service: str
) -> None:
    carol, dave = pair
    far_below = int(stack.get("/v1/prices")[BTC]["price"]) // 2
    tick = int(stack.get(f"/v1/markets/{BTC}")["tick_size"])
    resting = dave.client.place_order(
        BTC, True, SIZE, far_below // tick * tick, tif=TimeInForce.POST_ONLY
    )
    assert resting["resting"] == str(SIZE), resting

    submitter = Submitter(Client(stack.gateway_url, carol.key), dave.client.address)
    submitter.start()
    try:
        wait_for("acknowledged transfers", lambda: len(submitter.acked) >= 5, 60, every=0.2)
        _kill_and_restart(stack, service)
        wait_for("the gateway ready again", stack.ready, 120)
        mark = len(submitter.acked)
        wait_for(
            "transfers acknowledged after the restart",
            lambda: submitter.acked_since(mark) >= 5,
            120,
            every=0.2,
        )
    finally:
        submitter.halt.set()
        submitter.join(timeout=30)
    acked = list(submitter.acked)
    print(f"{service}: {len(acked)} acknowledged, {submitter.refused} refused during the outage")
    first_seq = min(seq for seq, _, _ in acked)

    logged = set(stack.sql(f"SELECT encode(tx_hash, 'hex') FROM tx_log WHERE seq >= {first_seq}"))
    lost = [(seq, h) for seq, h, _ in acked if h.removeprefix("0x").lower() not in logged]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged transactions lost: {lost[:5]}"

    open_orders = {o["order_hash"] for o in dave.client.orders()}
    assert resting["order_hash"] in open_orders

    last_nonce = max(n for _, _, n in acked)
    wait_for(
        "the gateway's replica at the last acknowledged nonce",
        lambda: int(carol.client.account()["nonce"]) > last_nonce,
        60,
    )
    last_seq = max(seq for seq, _, _ in acked)
    wait_for(
        f"a batch through seq {last_seq} verified on L1",
        lambda: stack.verified_through(last_seq),
        240,
        every=2.0,
    )
    dave.client.cancel_order(resting["order_hash"])
