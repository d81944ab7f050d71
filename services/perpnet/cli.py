"""The `perpnet` command: inspect the exchange's configuration and run benchmarks.

Benchmarks print JSON on stdout (figures, parameters, machine) and show their
progress on stderr, so `perpnet bench stf > out.json` stays machine-readable.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perpnet import __version__
from perpnet.client.cli import app as client_app
from perpnet.core.crypto import PrivateKey
from perpnet.core.markets import PPM, USD, MarketSet
from perpnet.devnet.cli import app as devnet_app
from perpnet.l1.cli import app as l1_app

app = typer.Typer(help="perpnet: a local testnet of a perpetual-futures exchange on a STARK rollup")
bench = typer.Typer(help="Benchmarks; each prints JSON with its figures, parameters and machine.")
key = typer.Typer(help="Account keys (secp256k1, Ethereum addresses).")
app.add_typer(bench, name="bench")
app.add_typer(key, name="key")
app.add_typer(l1_app, name="l1")
app.add_typer(devnet_app, name="devnet")
app.add_typer(client_app, name="client")
err = Console(stderr=True)
out = Console()

Progressed = Callable[[int, int], None]


@contextmanager
def progress(description: str) -> Iterator[Progressed]:
    """A progress bar on stderr; yields a `(done, total)` callback."""
    with Progress(
        TextColumn(description),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def emit(result: dict[str, object]) -> None:
    typer.echo(json.dumps(result, indent=2))


@app.command()
def version() -> None:
    """Print the perpnet version."""
    typer.echo(__version__)


@app.command()
def markets() -> None:
    """Show the default perpetual markets: quantums, ticks, steps, margin tiers, fees."""
    table = Table(title="perpetual markets")
    for column in ("id", "market", "tick (USD)", "step", "min size", "tiers IM/MM", "maker/taker"):
        table.add_column(column)
    for m in MarketSet().markets:
        tiers = ", ".join(
            f"{'∞' if t.up_to is None else f'≤{t.up_to / m.size_scale:,g}'}: "
            f"{t.initial_ppm * 100 / PPM:g}%/{t.maintenance_ppm * 100 / PPM:g}%"
            for t in m.tiers
        )
        table.add_row(
            str(m.market_id),
            m.symbol,
            f"{m.tick_size / USD:g}",
            f"{m.step_size / m.size_scale:g}",
            f"{m.min_order_size / m.size_scale:g}",
            tiers,
            f"{m.maker_fee_ppm / 100:g}/{m.taker_fee_ppm / 100:g} bp",
        )
    out.print(table)


@key.command("new")
def key_new() -> None:
    """Create a random account key; prints its address and secret (keep it safe)."""
    account = PrivateKey(secrets.token_bytes(32))
    emit({"address": "0x" + account.address.hex(), "private_key": "0x" + account.secret.hex()})


@bench.command("matching")
def bench_matching(
    ops: int = typer.Option(200_000, min=1_000, help="operations per run"),
    seed: int = typer.Option(1),
    repeats: int = typer.Option(5, min=1),
) -> None:
    """Order-book matching: ops/s and per-op latency for a mixed workload on one core."""
    from perpnet.bench import matching

    with err.status("matching benchmark"):
        emit(matching.run(ops=ops, seed=seed, repeats=repeats))


@bench.command("stf")
def bench_stf(
    batches: int = typer.Option(10, min=1, help="batches per run"),
    batch_size: int = typer.Option(1024, min=1),
    accounts: int = typer.Option(1_000, min=2),
    seed: int = typer.Option(1),
    repeats: int = typer.Option(5, min=1),
) -> None:
    """State transition: transactions/s applied, with a state root per batch."""
    from perpnet.bench import stf

    with progress("state-transition benchmark") as update:
        result = stf.run(batches, batch_size, accounts, seed, repeats, on_progress=update)
    emit(result)


@bench.command("recovery")
def bench_recovery(
    txs: int = typer.Option(20_000, min=100, help="transactions in the log"),
    batch_size: int = typer.Option(512, min=1),
    checkpoint_batches: int = typer.Option(10, min=1, help="a checkpoint every this many batches"),
    seed: int = typer.Option(1),
    repeats: int = typer.Option(3, min=1),
) -> None:
    """Sequencer restart: replay time of the whole log versus from the newest state checkpoint."""
    from perpnet.bench import recovery

    with err.status("recovery benchmark"):
        emit(recovery.run(txs, batch_size, checkpoint_batches, seed, repeats))


@bench.command("prove")
def bench_prove(
    sizes: str = typer.Option(
        "64,256,1024,4096", help="batch sizes (transactions), comma-separated"
    ),
    repeats: int = typer.Option(3, min=1),
) -> None:
    """Batch proofs: prove and verify time, proof bytes, trace size, security bits."""
    from perpnet.stark import batch_bench

    parsed = tuple(int(x) for x in sizes.split(",") if x.strip())
    with err.status("batch proof benchmark"):
        emit(batch_bench.run(sizes=parsed, repeats=repeats))


@bench.command("transport")
def bench_transport(
    calls: int = typer.Option(4000, min=16, help="calls per concurrency level and server"),
    payload_bytes: int = typer.Option(200, min=0, help="bytes sent and echoed per call"),
    repeats: int = typer.Option(3, min=1),
) -> None:
    """One internal gRPC hop: client and server CPU per unary call, the services' runtime
    against a bare grpc.aio server."""
    from perpnet.bench import transport

    with err.status("gRPC transport benchmark (echo servers on loopback)"):
        emit(transport.run(calls, payload_bytes, repeats))


@bench.command("e2e")
def bench_e2e(
    duration: float = typer.Option(20.0, min=1.0, max=600.0, help="seconds of load"),
    clients: int = typer.Option(8, min=1, max=256, help="concurrent trading clients"),
    provers: int = typer.Option(1, min=1, max=16),
    batch: int = typer.Option(1, min=1, max=100, help="orders per request (POST /v1/orders/batch)"),
    rate: float | None = typer.Option(
        None,
        min=0.1,
        max=20_000.0,
        help="open loop: orders/s offered by all clients together, latency from the scheduled "
        "send [default: closed loop, each client as fast as it is answered]",
    ),
) -> None:
    """The whole system under load: orders/s, trades/s, ack latency, proof cadence, backlog."""
    from perpnet.bench import e2e

    with err.status("end-to-end benchmark (starts its own devnet on loopback)") as status:
        emit(
            e2e.run(
                duration, clients, provers=provers, batch=batch, rate=rate, progress=status.update
            )
        )


@bench.command("l1")
def bench_l1(
    stark_sizes: str = typer.Option(
        "64,256,512,1024,2048,4096",
        help="batch sizes (transactions) proven and verified on chain, comma-separated; "
        "empty to skip",
    ),
    blowup: int | None = typer.Option(
        None, help="LDE blowup of the proofs verified on chain (power of 2) [default: the prover's]"
    ),
    queries: int | None = typer.Option(
        None,
        help="FRI queries: each costs verification gas and gives log2(blowup) bits "
        "[default: the prover's]",
    ),
) -> None:
    """L1 gas: per state update by batch size (fact registry, and STARK-verified on chain),
    deposit, claim, forced request, escape."""
    from perpnet.l1 import bench as l1_bench
    from perpnet.stark.errors import ParameterError
    from perpnet.stark.params import DEFAULT_PARAMS

    parsed = tuple(int(x) for x in stark_sizes.split(",") if x.strip())
    if any(n < 1 for n in parsed):
        raise typer.BadParameter("batch sizes must be positive", param_hint="--stark-sizes")
    try:
        params = dataclasses.replace(
            DEFAULT_PARAMS,
            blowup=DEFAULT_PARAMS.blowup if blowup is None else blowup,
            num_queries=DEFAULT_PARAMS.num_queries if queries is None else queries,
        )
    except ParameterError as exc:
        raise typer.BadParameter(str(exc), param_hint="--blowup/--queries") from exc
    with err.status("L1 gas benchmark (starts a local anvil; proves the stark sizes)"):
        emit(l1_bench.run(stark_sizes=parsed, proof_params=params))


if __name__ == "__main__":
    app()
