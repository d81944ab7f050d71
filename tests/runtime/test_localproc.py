"""Helper processes are stopped for sure, and one that dies at start says why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from perpnet.devnet.plan import Plan
from perpnet.runtime.localproc import (
    LocalProcessError,
    free_port,
    free_ports,
    spawn,
    wait_for_port,
)


def test_a_process_that_dies_at_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('no config'); sys.exit(3)"]
    process = spawn("broken", argv, tmp_path / "broken.log")
    with pytest.raises(LocalProcessError, match=r"broken exited with 3:\nno config"):
        wait_for_port(process, "127.0.0.1", free_port(), timeout=10)


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"  # noqa: E501
    with spawn("sleeper", [sys.executable, "-c", child], tmp_path / "sleeper.log") as process:
        assert process.alive()
    assert not process.alive() and process.popen.returncode != 0


def test_ports_chosen_together_are_distinct_and_a_devnet_plan_shares_none() -> None:
    """bind(0) starts at a random offset, so ports chosen one at a time repeat now and then
    (a devnet test once lost its bridge to the sequencer's port); chosen together, never."""
    ports = free_ports(300)
    assert len(set(ports)) == 300
    plan = Plan.on_free_ports(Path("/nonexistent"), provers=3)
    used = [plan.redis_port, plan.anvil_port, plan.gateway_port]
    used += [*plan.grpc_ports.values(), *plan.metrics_ports.values()]
    assert len(used) == len(set(used)) > 20
