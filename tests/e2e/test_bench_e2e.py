"""`perpnet bench e2e` on a short window: it runs the whole devnet, stops by itself and
reports every figure the issue names (the figures themselves are the README's, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.harness import devnet_lock
from perpnet.bench import e2e

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("batch", "rate"),
    [(1, None), (4, 40.0)],
    ids=["POST /v1/orders, closed loop", "POST /v1/orders/batch, open loop at 40 orders/s"],
)
def test_bench_e2e_reports_throughput_latency_proof_cadence_withdrawals_and_backlog(
    tmp_path: Path, batch: int, rate: float | None
) -> None:
    with devnet_lock():
        report = e2e.run(
            duration_s=4,
            clients=2,
            withdrawals=1,
            batch=batch,
            rate=rate,
            directory=tmp_path / "bench",
        )
    assert report["parameters"]["batch"] == batch
    assert report["parameters"]["rate_orders_per_s"] == rate
    json.dumps(report)  # JSON as printed
    figures = report["figures"]
    assert figures["orders_accepted"] > 0 and figures["orders_per_s"] > 0
    assert figures["trades_per_s"] > 0 and not figures["errors"]
    if rate is not None:  # the open loop offers its rate, no more
        assert figures["orders_per_s"] <= rate * 1.1
    assert 0 < figures["ack_ms"]["p50"] <= figures["ack_ms"]["p99"] <= figures["ack_ms"]["max"]
    backlog = figures["prover_backlog_batches"]
    assert backlog["samples"] and backlog["max"] is not None
    assert backlog["drain_s"] is not None  # L1 caught up with the window: bounded
    assert figures["withdrawal_latency_s"]["count"] == 1, figures["withdrawal_latency_s"]
    assert figures["withdrawal_latency_s"]["to_claimed_on_l1"]["median"] > 0
    assert set(report["goal"]) >= {"orders_per_s", "p99_ack_ms", "met"}
    cpu = report["where_the_time_goes"]["cpu_s_in_window"]
    assert cpu["sequencer"] > 0
    assert cpu["anvil"] > 0  # npm's anvil is a shim: the binary is its child
    pauses = report["where_the_time_goes"]["gc_pause_ms_in_window"]
    assert set(pauses) == {
        "gateway",
        "matcher",
        "sequencer",
        "margin",
        "oracle",
        "bridge",
        "prover-0",
    }
    assert all(ms >= 0 for ms in pauses.values())
    lag = report["where_the_time_goes"]["event_loop_lag"]
    assert set(lag) == set(pauses)  # every service samples its loop, 20 times a second
    assert all(v["samples"] > 0 and v["mean_ms"] >= 0 for v in lag.values())
    assert not (tmp_path / "bench" / "devnet.json").exists()  # the devnet is down


def test_bench_e2e_refuses_an_unbounded_run() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        e2e.run(duration_s=3600)
    with pytest.raises(ValueError, match="rate"):
        e2e.run(duration_s=5, rate=0)


def test_loop_lag_is_reported_only_from_complete_scrapes() -> None:
    lag, late = "perpnet_event_loop_lag_seconds", "0.025"
    before = {("matcher", lag, "", ""): (1.0, 100.0), ("matcher", lag, "le", late): (0.0, 98.0)}
    after = {("matcher", lag, "", ""): (1.5, 300.0), ("matcher", lag, "le", late): (0.0, 290.0)}
    assert e2e._loop_lag(before, after) == {
        "matcher": {"mean_ms": 2.5, "samples": 200, "over_25ms": 8}
    }
    without_bucket = {k: v for k, v in after.items() if k[2] != "le"}
    assert e2e._loop_lag(before, without_bucket) == {}  # not "every sample late"
    assert e2e._loop_lag({}, after) == {}  # not the process's lifetime as the window


def test_gc_pauses_are_reported_only_from_complete_scrapes() -> None:
    pause = ("sequencer", "perpnet_gc_pause_seconds", "", "")
    assert e2e._gc_pauses({pause: (0.25, 10.0)}, {pause: (0.5, 30.0)}) == {"sequencer": 250.0}
    assert e2e._gc_pauses({}, {pause: (0.5, 30.0)}) == {}  # not the lifetime as the window


def test_service_means_leave_out_a_process_whose_first_scrape_failed() -> None:
    submit = ("matcher", "perpnet_matcher_batch_stage_seconds", "stage", "submit")
    pause = ("matcher", "perpnet_gc_pause_seconds", "", "")  # every scrape of it has this
    after = {submit: (0.3, 30.0), pause: (0.5, 9.0)}
    label = "matcher micro-batch SubmitTxs"
    # answered, but no micro-batch yet: the series starts in the window
    assert e2e._means({pause: (0.1, 2.0)}, after) == {label: 10.0}
    assert e2e._means({pause: (0.1, 2.0), submit: (0.1, 10.0)}, after) == {label: 10.0}
    assert e2e._means({}, after) == {}  # not the process's lifetime as the window
