"""Local helper processes (redis-server, anvil, perpnet services) for tests and `perpnet devnet`.

Each process gets its own port and folder and is always stopped by us: we
never touch a system-wide service, and a test run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class LocalProcessError(RuntimeError):
    """A helper process could not be started or did not come up."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago (another process may still race
    us). All are held open while choosing: bind(0) starts at a random offset, so ports
    chosen one after another may repeat, and a stack of some thirty would share one in
    about one plan in seventy."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; another process may still race us)."""
    return free_ports(1, host)[0]


@dataclass
class LocalProcess:
    """A child process with its output in a log file; stop() ends it and its own children."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LocalProcess:
    """Start `argv` in its own process group (so stop() reaches its children too)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = log_path.open("ab")
    try:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise LocalProcessError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    finally:
        log.close()  # the child holds its own copy
    return LocalProcess(name, popen, log_path)


def wait_for_port(process: LocalProcess, host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until `host:port` accepts connections; fail early (with its log) if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise LocalProcessError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.stop()
    raise LocalProcessError(f"{process.name} did not listen on {host}:{port} in {timeout:g} s")


@dataclass
class RedisServer(LocalProcess):
    port: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(directory: Path, port: int | None = None, timeout: float = 10.0) -> RedisServer:
    """A private redis-server on loopback with its data (append-only file) in `directory`."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise LocalProcessError(
            "redis-server not found: apt-get install redis-server (scripts/test.sh does this)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes"]
    started = spawn("redis-server", argv, directory / "redis.log")
    server = RedisServer(started.name, started.popen, started.log_path, port)
    wait_for_port(server, "127.0.0.1", port, timeout)
    return server
