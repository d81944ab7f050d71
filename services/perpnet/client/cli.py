"""`perpnet client ...`: a trader's command line (the lead wires this sub-app into the CLI).

Settings come from the environment: PERPNET_GATEWAY_URL, PERPNET_KEY_FILE,
PERPNET_L1_RPC_URL and PERPNET_L1_DEPLOYMENT (the file `perpnet l1 deploy`
writes). Amounts, sizes and prices are integer quantums (collateral: 10**6
per USD), exactly what is signed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

import typer
from rich.console import Console
from rich.table import Table

from perpnet.client.sdk import Client, GatewayError, L1Wallet, load_key, new_key, save_key
from perpnet.core.orders import OrderKind, TimeInForce
from perpnet.l1.client import L1RevertError
from perpnet.l1.deploy import DEFAULT_PATH

app = typer.Typer(help="Trade on perpnet: keys, L1 deposits and exits, orders, positions.")
key_app = typer.Typer(help="The account key in PERPNET_KEY_FILE.")
order_app = typer.Typer(help="Place, cancel and list orders.")
app.add_typer(key_app, name="key")
app.add_typer(order_app, name="order")
out = Console()
err = Console(stderr=True)
P = ParamSpec("P")

GATEWAY = typer.Option("http://127.0.0.1:8080", envvar="PERPNET_GATEWAY_URL", help="Gateway URL.")
KEY_FILE = typer.Option(Path(".perpnet/key.json"), envvar="PERPNET_KEY_FILE", help="Key file.")
L1_RPC = typer.Option("http://127.0.0.1:8545", envvar="PERPNET_L1_RPC_URL", help="L1 JSON-RPC.")
DEPLOYMENT = typer.Option(DEFAULT_PATH, envvar="PERPNET_L1_DEPLOYMENT", help="L1 deployment file.")
SUBACCOUNT = typer.Option(0, min=0, help="Subaccount (128 and up: isolated margin).")


@app.callback()
def client() -> None:
    """Trade on perpnet: keys, L1 deposits and exits, orders, positions."""


def _client(gateway: str, key_file: Path, subaccount: int = 0) -> Client:
    return Client(gateway, _key(key_file), subaccount=subaccount)


def _key(key_file: Path) -> Any:
    if not key_file.exists():
        err.print(f"no key at {key_file}: run `perpnet client key new`")
        raise typer.Exit(1)
    return load_key(key_file)


def _wallet(key_file: Path, rpc: str, deployment: Path) -> L1Wallet:
    if not deployment.exists():
        err.print(f"no L1 deployment at {deployment}: run `perpnet l1 deploy`")
        raise typer.Exit(1)
    return L1Wallet.connect(rpc, deployment, _key(key_file))


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    out.print(table)


def _emit(value: object) -> None:
    typer.echo(json.dumps(value, indent=2))


def refusing(command: Callable[P, None]) -> Callable[P, None]:
    """A command whose refusals (gateway or L1) print one clear line and exit 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (GatewayError, L1RevertError) as exc:
            err.print(f"refused: {exc}")
            raise typer.Exit(1) from None

    return run


@key_app.command("new")
def key_new(
    key_file: Path = KEY_FILE, force: bool = typer.Option(False, help="Overwrite.")
) -> None:
    """Create a random key in the key file (refuses to overwrite one without --force)."""
    if key_file.exists() and not force:
        err.print(f"{key_file} exists (use --force to replace it)")
        raise typer.Exit(1)
    key = new_key()
    save_key(key, key_file)
    _emit({"address": "0x" + key.address.hex(), "file": str(key_file)})


@key_app.command("show")
def key_show(key_file: Path = KEY_FILE) -> None:
    """Print the key's address."""
    _emit({"address": "0x" + _key(key_file).address.hex(), "file": str(key_file)})


@app.command()
@refusing
def faucet(
    amount: int = typer.Argument(..., min=1),
    key_file: Path = KEY_FILE,
    rpc: str = L1_RPC,
    deployment: Path = DEPLOYMENT,
) -> None:
    """Mint test collateral on L1 (quantums)."""
    wallet = _wallet(key_file, rpc, deployment)
    wallet.faucet(amount)
    _emit({"l1_balance": str(wallet.balance())})


@app.command()
@refusing
def deposit(
    amount: int = typer.Argument(..., min=1),
    subaccount: int = SUBACCOUNT,
    key_file: Path = KEY_FILE,
    rpc: str = L1_RPC,
    deployment: Path = DEPLOYMENT,
) -> None:
    """Deposit collateral from L1 to your L2 account; credited after K confirmations."""
    deposit_id = _wallet(key_file, rpc, deployment).deposit(amount, subaccount)
    _emit({"deposit_id": deposit_id, "status": f"GET /v1/deposits/{deposit_id}"})


@order_app.command("place")
@refusing
def order_place(
    market: int = typer.Argument(..., min=0),
    side: str = typer.Argument(..., help="buy or sell"),
    size: int = typer.Argument(..., min=1),
    price: int = typer.Argument(..., min=1, help="limit (or worst) price, quantums"),
    kind: str = typer.Option("LIMIT", help=", ".join(OrderKind.__members__)),
    tif: str = typer.Option("GTT", help=", ".join(TimeInForce.__members__)),
    trigger_price: int = typer.Option(0, min=0),
    reduce_only: bool = typer.Option(False),
    subaccount: int = SUBACCOUNT,
    gateway: str = GATEWAY,
    key_file: Path = KEY_FILE,
) -> None:
    """Sign and place an order."""
    if (
        side not in ("buy", "sell")
        or kind not in OrderKind.__members__
        or tif not in TimeInForce.__members__
    ):
        err.print("side is buy or sell; kind and tif are names (see --help)")
        raise typer.Exit(2)
    ack = _client(gateway, key_file, subaccount).place_order(
        market, side == "buy", size, price, kind=OrderKind[kind], tif=TimeInForce[tif],
        trigger_price=trigger_price, reduce_only=reduce_only,
    )  # fmt: skip
    _emit(ack)


@order_app.command("cancel")
@refusing
def order_cancel(order_hash: str, gateway: str = GATEWAY, key_file: Path = KEY_FILE) -> None:
    """Cancel one of your orders (a signed cancel)."""
    _emit(_client(gateway, key_file).cancel_order(order_hash))


@order_app.command("list")
@refusing
def order_list(gateway: str = GATEWAY, key_file: Path = KEY_FILE) -> None:
    """Your open orders."""
    rows = [
        {**o["order"], "hash": o["order_hash"][:18] + "…", "remaining": o["remaining"],
         "status": o["status"]}
        for o in _client(gateway, key_file).orders()
    ]  # fmt: skip
    _table("open orders", rows, ["hash", "market", "is_buy", "size", "remaining", "price", "kind",
                                 "time_in_force", "status"])  # fmt: skip


@app.command()
@refusing
def positions(
    subaccount: int = SUBACCOUNT, gateway: str = GATEWAY, key_file: Path = KEY_FILE
) -> None:
    """Your collateral, positions and margin."""
    account = _client(gateway, key_file, subaccount).account()
    risk = account.get("risk") or {}
    _table(
        f"account {account['account_id']} ({account['owner']}/{account['subaccount']})",
        [{"collateral": account["collateral"], "nonce": account["nonce"], **risk}],
        [
            "collateral",
            "nonce",
            "value",
            "initial",
            "maintenance",
            "free_collateral",
            "liquidatable",
        ],
    )
    _table("positions", account["positions"], ["market_id", "size", "cost", "funding_index"])


@app.command()
@refusing
def withdraw(
    amount: int = typer.Argument(..., min=1),
    recipient: str | None = None,
    subaccount: int = SUBACCOUNT,
    gateway: str = GATEWAY,
    key_file: Path = KEY_FILE,
) -> None:
    """Withdraw from L2 (signed); claim on L1 once its batch is verified."""
    _emit(_client(gateway, key_file, subaccount).withdraw(amount, recipient))


@app.command()
@refusing
def claim(key_file: Path = KEY_FILE, rpc: str = L1_RPC, deployment: Path = DEPLOYMENT) -> None:
    """Claim your verified withdrawals on L1."""
    wallet = _wallet(key_file, rpc, deployment)
    _emit({"claimed": str(wallet.claim()), "l1_balance": str(wallet.balance())})


@app.command("force-withdraw")
@refusing
def force_withdraw(
    amount: int = typer.Argument(..., min=1),
    subaccount: int = SUBACCOUNT,
    key_file: Path = KEY_FILE,
    rpc: str = L1_RPC,
    deployment: Path = DEPLOYMENT,
) -> None:
    """Ask L1 for a withdrawal the operator must serve within the grace period."""
    request_id = _wallet(key_file, rpc, deployment).forced_withdrawal(amount, subaccount)
    _emit({"request_id": request_id})


@app.command()
@refusing
def freeze(
    request_id: int = typer.Argument(..., min=0),
    key_file: Path = KEY_FILE,
    rpc: str = L1_RPC,
    deployment: Path = DEPLOYMENT,
) -> None:
    """Freeze the rollup over a forced request left unserved past its grace period."""
    _wallet(key_file, rpc, deployment).freeze(request_id)
    _emit({"frozen": True})


@app.command()
@refusing
def escape(
    subaccount: int = SUBACCOUNT,
    gateway: str = GATEWAY,
    key_file: Path = KEY_FILE,
    rpc: str = L1_RPC,
    deployment: Path = DEPLOYMENT,
) -> None:
    """After a freeze: withdraw your account's value on L1 with its Merkle proof."""
    proof = _client(gateway, key_file, subaccount).proof()
    paid = _wallet(key_file, rpc, deployment).escape(proof)
    _emit({"escaped": str(paid), "account_id": proof["account_id"]})
