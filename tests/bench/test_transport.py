"""`perpnet bench transport`: what one internal gRPC hop costs, through the services' runtime
and through a bare grpc.aio server, each in a process of its own."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from perpnet.bench import transport
from perpnet.cli import app


def test_transport_bench_reports_both_servers_at_both_concurrencies() -> None:
    result = CliRunner().invoke(app, ["bench", "transport", "--calls", "64", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parameters"]["calls"] == 64 and report["machine"]["cpu_count"]
    figures = report["figures"]
    for server in ("bare", "runtime"):
        for level in ("concurrency_1", "concurrency_16"):
            row = figures[server][level]
            # both sides really worked (each process reads its own clock, not /proc's ticks)
            assert row["client_cpu_ms"] > 0 and row["server_cpu_ms"] > 0, row
            assert row["wall_ms"] > 0, row
            assert row["hop_cpu_ms"] == pytest.approx(
                row["client_cpu_ms"] + row["server_cpu_ms"], abs=0.002
            )
    assert set(figures["runtime_over_bare"]) == {"concurrency_1", "concurrency_16"}


def test_bad_parameters_are_refused_before_any_server_starts() -> None:
    with pytest.raises(ValueError, match="calls must be at least 16"):
        transport.run(calls=8)
    with pytest.raises(ValueError, match="payload_bytes must be between 0 and"):
        transport.run(payload_bytes=transport.MAX_PAYLOAD + 1)
    result = CliRunner().invoke(app, ["bench", "transport", "--calls", "5"])
    assert result.exit_code == 2 and "calls" in result.output
