"""Helper processes are stopped for sure, and one that dies at start says why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from perpnet.runtime.localproc import LocalProcessError, free_port, spawn, wait_for_port


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
