"""`perpnet devnet up | status | down`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from perpnet.devnet.plan import Plan
from perpnet.devnet.status import HEADLINES, rows
from perpnet.devnet.supervisor import DevnetError, down, load, up

app = typer.Typer(help="The whole testnet as local processes (SQLite, redis-server, anvil).")
console = Console(stderr=True)
DIRECTORY = typer.Option(Path(".perpnet/devnet"), "--dir", help="where data, logs and the env go")


@app.command("up")
def up_command(
    directory: Path = DIRECTORY,
    provers: int = typer.Option(2, min=1, max=16, help="prover worker processes"),
    timeout: float = typer.Option(90.0, help="seconds to wait for every service to be healthy"),
    grace_period: int = typer.Option(120, min=1, help="forced-withdrawal grace period (s)"),
    block_time: float = typer.Option(1.0, min=0.1, help="anvil's block time (s)"),
) -> None:
    """Start redis, anvil, the contracts and every service; return once all are healthy."""
    plan = Plan(directory, provers=provers, grace_period_s=grace_period, block_time_s=block_time)
    try:
        with console.status("starting") as status:
            up(plan, lambda step: status.update(f"starting {step}"), timeout)
    except DevnetError as exc:
        console.print(f"[red]devnet failed to start:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"devnet up: gateway http://127.0.0.1:{plan.gateway_port}/docs, L1 {plan.rpc_url}"
    )
    console.print(f"environment for clients and tools: {plan.env_file}")


def _table(plan: Plan) -> Table:
    table = Table(title=f"perpnet devnet ({plan.directory})")
    table.add_column("process")
    table.add_column("pid")
    table.add_column("health")
    for label, _ in HEADLINES:
        table.add_column(label)
    for row in rows(plan, load(plan)):
        colour = "green" if row.health in ("SERVING", "UP") else "red"
        cells = [
            f"{row.headlines[label]:g}" if label in row.headlines else "" for label, _ in HEADLINES
        ]
        table.add_row(row.name, str(row.pid), f"[{colour}]{row.health}[/{colour}]", *cells)
    return table


@app.command("status")
def status_command(
    directory: Path = DIRECTORY,
    watch: bool = typer.Option(False, "--watch", help="refresh every second until Ctrl-C"),
    seconds: float = typer.Option(
        0.0, help="with --watch: stop after this many seconds (0: never)"
    ),
) -> None:
    """A table of services, health, heights and pipeline metrics."""
    plan = Plan(directory)
    if not load(plan):
        console.print(f"no devnet recorded in {directory}")
        raise typer.Exit(1)
    if not watch:
        Console().print(_table(plan))
        return
    started = time.monotonic()
    with Live(_table(plan), console=Console(), refresh_per_second=1) as live:
        while not seconds or time.monotonic() - started < seconds:
            time.sleep(1.0)
            live.update(_table(plan))


@app.command("down")
def down_command(directory: Path = DIRECTORY) -> None:
    """Stop every process the devnet started (SIGTERM, then SIGKILL after a grace period)."""
    killed = down(Plan(directory), lambda step: console.print(step))
    if killed:
        console.print(f"[yellow]killed after the grace period:[/yellow] {', '.join(killed)}")
    console.print("devnet down")
