"""`perpnet l1 ...`: deploy the rollup's contracts (the lead wires this sub-app into the CLI)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from web3 import Web3

from perpnet.l1.anvil import DEV_KEY, Anvil
from perpnet.l1.client import Sender
from perpnet.l1.compile import DEFAULT_BUFFERS, STATEMENT_LIMIT_VARIABLES, Buffers
from perpnet.l1.deploy import (
    DEFAULT_PATH,
    TESTNET_GRACE_PERIOD_S,
    TESTNET_RECLAIM_DELAY_S,
    deploy,
)

app = typer.Typer(help="L1: the rollup's contracts on an EVM node (anvil by default).")


@app.callback()
def l1() -> None:
    """L1: the rollup's contracts on an EVM node (anvil by default)."""


@app.command("deploy")
def deploy_command(
    rpc_url: str = typer.Option(
        "http://127.0.0.1:8545", envvar="PERPNET_L1_RPC", help="JSON-RPC endpoint of the L1 node."
    ),
    out: str = typer.Option(str(DEFAULT_PATH), help="Where to write addresses and ABIs."),
    grace_period: int = typer.Option(
        TESTNET_GRACE_PERIOD_S, help="Seconds to serve a forced request (StarkEx: 7 days)."
    ),
    reclaim_delay: int = typer.Option(
        TESTNET_RECLAIM_DELAY_S, help="Seconds before an unconsumed deposit can be reclaimed."
    ),
    operator: str | None = typer.Option(None, help="Operator address (default: the deployer)."),
    registrar: str | None = typer.Option(
        None, help="Fact registrar, the off-chain verifier (default: the deployer)."
    ),
    start_anvil: bool = typer.Option(
        False, "--anvil", help="Start a local anvil on the RPC URL's port and keep it running."
    ),
    force: bool = typer.Option(False, help="Deploy anew even if the file's contracts are live."),
    verifier: str = typer.Option(
        "stark",
        envvar="PERPNET_L1_VERIFIER",
        help="stark: the rollup checks every batch proof on chain; facts: a fact registry "
        "the bridge fills after checking proofs off chain (cheaper gas, trusted registrar).",
    ),
    max_statement_bytes: int = typer.Option(
        DEFAULT_BUFFERS.statement,
        # the sequencer's limit by default: one knob in .env sizes both
        envvar=list(STATEMENT_LIMIT_VARIABLES),
        help="Longest batch statement the contracts take (a compile-time buffer: every "
        "update pays memory for it); by default the sequencer's statement limit.",
    ),
) -> None:
    """Compile, deploy token + verifier + rollup, and write the deployment file (idempotent).

    The deployer key comes from PERPNET_L1_KEY (hex); without it, anvil's first
    dev account, which only a devnode knows.
    """
    try:
        buffers = Buffers.for_statement(max_statement_bytes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-statement-bytes") from exc
    node: Anvil | None = None
    if start_anvil:
        node = Anvil(port=int(rpc_url.rsplit(":", 1)[1].split("/")[0]))
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    key = os.environ.get("PERPNET_L1_KEY", DEV_KEY)
    sender = Sender(w3, key=bytes.fromhex(key.removeprefix("0x")))
    deployment = deploy(
        w3,
        sender,
        path=Path(out),
        operator=operator,
        registrar=registrar,
        grace_period=grace_period,
        deposit_reclaim_delay=reclaim_delay,
        rpc_url=rpc_url,
        force=force,
        verifier=verifier,
        buffers=buffers,
    )
    typer.echo(json.dumps({"file": out, **deployment.addresses}, indent=2))
    if node is not None:
        typer.echo(f"anvil running on {node.url}; Ctrl-C stops it", err=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            node.stop()
