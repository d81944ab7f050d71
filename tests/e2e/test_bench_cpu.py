"""The benches' CPU accounting counts a process's live descendants, as `anvil` from
npm (a node shim that runs the real binary as its child) needs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from perpnet.bench.report import process_cpu_seconds

BUSY = (
    "import time\nend = time.process_time() + 0.4\n"
    "while time.process_time() < end: pass\ntime.sleep(5)"
)


def _cpu_seconds(pid: int) -> float | None:
    return process_cpu_seconds([pid])[pid]


def _own_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cpu_of_a_process_includes_its_live_children() -> None:
    shim = subprocess.Popen(["sh", "-c", f"{sys.executable} -c '{BUSY}'; true"])
    try:
        time.sleep(1.5)  # the child has burned its 0.4 s and sleeps; the shim waits on it
        spent = _cpu_seconds(shim.pid)
        assert spent is not None and spent >= 0.3, spent
        assert _own_cpu_seconds(shim.pid) < 0.1  # what the bench used to read
    finally:
        shim.kill()
        shim.wait()
    assert _cpu_seconds(shim.pid) is None  # gone
