"""A local anvil (a real EVM devnode) for tests and the devnet: found, started, always stopped.

The binary comes from `PERPNET_ANVIL`, then PATH, then `<repo>/.tools` where
`scripts/test.sh` installs the npm package. The npm launcher is a node script
that spawns the real binary, so anvil runs in its own process group and the
whole group is killed on stop: no orphan keeps a port busy after a test run.

Limits are raised on the command line because a state update carries the
batch's public inputs and a proof of up to 200 KB as calldata (8M gas at
EIP-7623's calldata floor) and a full 64 KB batch of withdrawals costs more
than the default 30M block: the block gas limit goes to 100M. EIP-7825's
per-transaction cap (Osaka) is off in anvil unless asked for.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from perpnet.runtime.localproc import free_port

REPO = Path(__file__).resolve().parents[3]
INSTALL_HINT = "npm install --prefix .tools @foundry-rs/anvil"
BLOCK_GAS_LIMIT = 100_000_000
# anvil's default mnemonic: its first account funds and deploys on a fresh devnode.
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


class AnvilNotFoundError(RuntimeError):
    pass


def find_anvil() -> str:
    """The anvil executable, or AnvilNotFoundError telling how to install it."""
    configured = os.environ.get("PERPNET_ANVIL")
    if configured:
        if not os.access(configured, os.X_OK):
            raise AnvilNotFoundError(f"PERPNET_ANVIL={configured} is not an executable")
        return configured
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    local = REPO / ".tools" / "node_modules" / ".bin" / "anvil"
    if os.access(local, os.X_OK):
        return str(local)
    raise AnvilNotFoundError(
        f"anvil not found (PERPNET_ANVIL, PATH, {local}); install it with `{INSTALL_HINT}` "
        "in the repository (scripts/test.sh does this)"
    )


def rpc(url: str, method: str, params: list[object] | None = None, timeout: float = 5.0) -> object:
    """One raw JSON-RPC call (used before web3 is set up, and for anvil_* methods)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


class Anvil:
    """A running anvil; a context manager, and stopped at interpreter exit in any case."""

    def __init__(
        self,
        port: int | None = None,
        *,
        block_time: float | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 30.0,
        gas_limit: int = BLOCK_GAS_LIMIT,
    ) -> None:
        self.binary = find_anvil()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            self.binary,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--gas-limit",
            str(gas_limit),
            *(("--block-time", str(block_time)) if block_time else ()),
            *extra_args,
        ]
        # Lives as long as the process (its output, for errors); closed in stop().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.stop)
        self._wait_ready(startup_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                output = self.output()
                self.stop()
                raise RuntimeError(f"anvil exited before answering RPC:\n{output}")
            try:
                rpc(self.url, "eth_chainId", timeout=1.0)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"anvil did not answer on {self.url} in {timeout}s"
                    ) from None
                time.sleep(0.05)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def increase_time(self, seconds: int) -> None:
        """Move the chain's clock forward and mine a block stamped with it."""
        rpc(self.url, "evm_increaseTime", [seconds])
        rpc(self.url, "evm_mine")

    def set_balance(self, address: str, wei: int) -> None:
        """Give an account ether for gas (test traders sign with their own L2 keys)."""
        rpc(self.url, "anvil_setBalance", [address, hex(wei)])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        # The whole group: the npm launcher may already be gone while the binary lives on.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
