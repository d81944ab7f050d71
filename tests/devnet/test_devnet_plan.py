"""The devnet's wiring, and a failed start that leaves nothing behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from perpnet.devnet.plan import Plan, oracle_keys
from perpnet.devnet.supervisor import DevnetError, load, up
from perpnet.runtime.localproc import free_port


def test_every_service_gets_one_environment_and_provers_are_numbered(tmp_path: Path) -> None:
    plan = Plan(tmp_path, provers=3)
    names = [name for name, _ in plan.processes()]
    assert names == [
        "sequencer", "oracle", "margin", "matcher", "prover-0", "prover-1", "prover-2",
        "bridge", "gateway",
    ]  # fmt: skip
    env = plan.environment()
    assert env["PERPNET_DATABASE_URL"].endswith("perpnet.db")
    assert env["PERPNET_ORACLE_SIGNERS"].split(",") == [
        "0x" + k.address.hex() for k in oracle_keys()
    ]
    worker = plan.process_env("prover-2", "prover")
    assert worker["PERPNET_PROVER_CONSUMER"] == "prover-2"
    ports = {
        plan.process_env(f"prover-{i}", "prover")["PERPNET_PROVER_METRICS_PORT"] for i in range(3)
    }
    assert len(ports) == 3


def test_a_failed_start_stops_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERPNET_ANVIL", str(tmp_path / "no-such-anvil"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # only a missing anvil, redis-server stays
    plan = Plan(tmp_path, redis_port=free_port())
    steps: list[str] = []
    with pytest.raises(DevnetError) as info:
        up(plan, steps.append, health_timeout_s=5)
    assert "anvil" in str(info.value)
    assert steps[:2] == ["redis-server", "anvil"]
    assert load(plan) == [] and not plan.record.exists()  # the record is gone ...
    with pytest.raises(OSError):  # ... and so is the redis-server it had started
        socket.create_connection(("127.0.0.1", plan.redis_port), timeout=1).close()
