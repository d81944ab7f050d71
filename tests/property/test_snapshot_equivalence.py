"""A restored snapshot is the same state: same root, same outcome and root for every later tx."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_invariants import BASE_PRICE, TRADERS, Run, Step, build, steps

from perpnet.core import snapshot
from perpnet.core.accounts import SYSTEM_OWNER
from perpnet.core.errors import CoreError
from perpnet.core.events import Event
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Tx
from perpnet.testkit import Desk


def outcome(state: ExchangeState, tx: Tx) -> tuple[Event, ...] | str:
    try:
        return state.apply(tx)
    except CoreError as exc:
        return exc.code.value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=2, max_size=30), st.data())
def test_restored_state_behaves_as_the_original(drawn: list[Step], data: st.DataObject) -> None:
    desk = Desk()
    run = Run(desk, desk.state(), [])
    prelude: list[Tx] = [desk.price(m, px) for m, px in BASE_PRICE.items()]
    prelude += [desk.deposit(SYSTEM_OWNER, 1_000 * USD)]
    prelude += [desk.deposit(key, 5_000 * USD) for key in TRADERS]
    for tx in prelude:
        run.state.apply(tx)
    cut = data.draw(st.integers(0, len(drawn)), label="snapshot after step")
    copy: ExchangeState | None = None
    for i, step in enumerate(drawn):
        if i == cut:
            image, root = snapshot.capture(run.state), run.state.root()
            copy = snapshot.restore(snapshot.snapshot(run.state), desk.config)
            assert copy.root() == root
        for tx in build(run, step):
            got = outcome(run.state, tx)
            if copy is not None:
                assert outcome(copy, tx) == got
                assert copy.root() == run.state.root()
                assert copy.globals_bytes() == run.state.globals_bytes()
    if copy is not None:
        # the image taken at the cut is unaffected by everything applied since
        assert snapshot.restore(snapshot.encode(image, desk.config), desk.config).root() == root
        # and a snapshot of the restored state is byte for byte the original's
        assert snapshot.snapshot(copy) == snapshot.snapshot(run.state)
