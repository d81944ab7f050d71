"""A small Python SDK for perpnet: L2 through the gateway, L1 through the rollup contract.

    key = load_key(Path(".perpnet/key.json"))
    client = Client("http://127.0.0.1:8080", key)
    client.place_order(market=0, is_buy=True, size=10**8, price=50_000 * USD)

Every write is signed here with the core's typed-data hashing, in the domain
the gateway announces (GET /v1/info). Refusals raise GatewayError with the
gateway's status, code and message.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

from perpnet.core.crypto import PrivateKey
from perpnet.core.orders import Order, OrderKind, SelfTrade, SignedOrder, TimeInForce
from perpnet.core.txs import Transfer, Withdraw
from perpnet.core.typed_data import Domain
from perpnet.gateway.schemas import OrderFields
from perpnet.gateway.signing import SignedCancel
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.deploy import Deployment
from perpnet.runtime.clock import now_ms

GTC_EXPIRY_MS = 2**62  # "good til cancel": an expiry nobody reaches
REQUEST_TTL_MS = 60_000  # how long a signed cancel, withdrawal or transfer stays valid


class GatewayError(RuntimeError):
    """The gateway refused a request: HTTP status, stable code, reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def hex0x(value: bytes) -> str:
    return "0x" + value.hex()


def parse_hex(text: str | bytes, size: int | None = None) -> bytes:
    raw = text if isinstance(text, bytes) else bytes.fromhex(text.removeprefix("0x"))
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


# ------------------------------------------------------------------ keys


def new_key() -> PrivateKey:
    return PrivateKey(secrets.token_bytes(32))


def save_key(key: PrivateKey, path: Path) -> None:
    """Write the key file (owner-only permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"address": hex0x(key.address), "private_key": hex0x(key.secret)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(payload, file, indent=2)
        file.write("\n")


def load_key(path: Path) -> PrivateKey:
    return PrivateKey(parse_hex(json.loads(path.read_text())["private_key"], 32))


# ------------------------------------------------------------------ L2


class Client:
    """The gateway's REST API for one account key (and subaccount)."""

    def __init__(
        self,
        gateway_url: str,
        key: PrivateKey | None = None,
        *,
        subaccount: int = 0,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        """`http` replaces the HTTP client (a FastAPI TestClient in tests)."""
        self.http = http or httpx.Client(base_url=gateway_url, timeout=timeout)
        self._key = key
        self.subaccount = subaccount
        self._domain: Domain | None = None

    @property
    def key(self) -> PrivateKey:
        if self._key is None:
            raise ValueError("this client has no key: create one with `perpnet client key new`")
        return self._key

    @property
    def address(self) -> str:
        return hex0x(self.key.address)

    def close(self) -> None:
        self.http.close()

    # ---------------------------------------------------------------- transport

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.http.request(method, path, **kwargs)
        if reply.status_code >= 400:
            try:
                error = reply.json()["error"]
                raise GatewayError(reply.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise GatewayError(reply.status_code, "HTTP_ERROR", reply.text) from None
        return reply.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._send("POST", path, json=body)

    def domain(self) -> Domain:
        """The signing domain the gateway checks against (asked once)."""
        if self._domain is None:
            info = self.get("/v1/info")
            contract = parse_hex(info["verifying_contract"], 20)
            self._domain = Domain(info["chain_id"], contract, info["name"], info["version"])
        return self._domain

    # ---------------------------------------------------------------- reads

    def markets(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/markets"))

    def book(self, market: int, levels: int = 20) -> dict[str, Any]:
        return dict(self.get(f"/v1/markets/{market}/book", levels=levels))

    def prices(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/prices"))

    def account(self, account: str | None = None) -> dict[str, Any]:
        """An account (default: this key's) with positions and risk."""
        return dict(self.get(f"/v1/accounts/{account or self.address}", subaccount=self.subaccount))

    def balances(self) -> dict[str, Any]:
        return dict(self.get(f"/v1/accounts/{self.address}/balances", subaccount=self.subaccount))

    def positions(self) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/accounts/{self.address}/positions", subaccount=self.subaccount))

    def orders(self) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/accounts/{self.address}/orders"))

    def proof(self) -> dict[str, Any]:
        """The account's leaf and Merkle path (what `L1Wallet.escape` sends)."""
        return dict(self.get(f"/v1/accounts/{self.address}/proof", subaccount=self.subaccount))

    def withdrawals(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/withdrawals", recipient=self.address))

    def deposits(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/deposits", owner=self.address))

    # ---------------------------------------------------------------- orders

    def sign_order(
        self,
        market: int,
        is_buy: bool,
        size: int,
        price: int,
        *,
        kind: OrderKind = OrderKind.LIMIT,
        tif: TimeInForce = TimeInForce.GTT,
        trigger_price: int = 0,
        reduce_only: bool = False,
        self_trade: SelfTrade = SelfTrade.CANCEL_MAKER,
        nonce: int | None = None,
        expiry_ms: int = GTC_EXPIRY_MS,
    ) -> SignedOrder:
        """A signed order; the nonce defaults to the clock in ns (unique per order)."""
        order = Order(
            self.key.address, self.subaccount, market, is_buy, size, price, kind, tif,
            trigger_price, reduce_only, self_trade,
            time.time_ns() if nonce is None else nonce, expiry_ms,
        )  # fmt: skip
        return SignedOrder.create(order, self.key, self.domain())

    @staticmethod
    def order_body(signed: SignedOrder) -> dict[str, Any]:
        return {**OrderFields.of(signed.order), "signature": hex0x(signed.signature)}

    def place_order(
        self, market: int, is_buy: bool, size: int, price: int, **kw: Any
    ) -> dict[str, Any]:
        """Sign and place; returns the ack (order_hash, fills, resting, cancelled)."""
        signed = self.sign_order(market, is_buy, size, price, **kw)
        return dict(self.post("/v1/orders", self.order_body(signed)))

    def amend_order(self, order_hash: str | bytes, market: int, is_buy: bool, size: int,
                    price: int, **kw: Any) -> dict[str, Any]:  # fmt: skip
        signed = self.sign_order(market, is_buy, size, price, **kw)
        path = f"/v1/orders/{hex0x(parse_hex(order_hash, 32))}/amend"
        return dict(self.post(path, self.order_body(signed)))

    def cancel_order(self, order_hash: str | bytes) -> dict[str, Any]:
        digest = parse_hex(order_hash, 32)
        cancel = SignedCancel(self.key.address, digest, now_ms() + REQUEST_TTL_MS)
        signed = cancel.signed(self.key, self.domain())
        body = {"owner": self.address, "expiry": str(signed.expiry_ms),
                "signature": hex0x(signed.signature)}  # fmt: skip
        return dict(self.post(f"/v1/orders/{hex0x(digest)}/cancel", body))

    # ---------------------------------------------------------------- collateral

    def _nonce(self) -> int:
        return int(self.account()["nonce"])

    def withdraw(
        self, amount: int, recipient: str | None = None, nonce: int | None = None
    ) -> dict[str, Any]:
        """Withdraw to L1 (default recipient: this key's address); claim it there when verified."""
        to = parse_hex(recipient or self.address, 20)
        tx = Withdraw(
            0, self.key.address, self.subaccount, amount, to,
            self._nonce() if nonce is None else nonce, now_ms() + REQUEST_TTL_MS,
        ).signed(self.key, self.domain())  # fmt: skip
        return dict(self.post("/v1/withdrawals", {
            "owner": self.address, "subaccount": tx.subaccount, "amount": str(tx.amount),
            "recipient": hex0x(tx.recipient), "nonce": str(tx.nonce), "expiry": str(tx.expiry_ms),
            "signature": hex0x(tx.signature),
        }))  # fmt: skip

    def transfer(self, to: str, amount: int, to_subaccount: int = 0,
                 nonce: int | None = None) -> dict[str, Any]:  # fmt: skip
        tx = Transfer(
            0, self.key.address, self.subaccount, parse_hex(to, 20), to_subaccount, amount,
            self._nonce() if nonce is None else nonce, now_ms() + REQUEST_TTL_MS,
        ).signed(self.key, self.domain())  # fmt: skip
        return dict(self.post("/v1/transfers", {
            "owner": self.address, "subaccount": tx.subaccount, "to_owner": hex0x(tx.to_owner),
            "to_subaccount": tx.to_subaccount, "amount": str(tx.amount), "nonce": str(tx.nonce),
            "expiry": str(tx.expiry_ms), "signature": hex0x(tx.signature),
        }))  # fmt: skip


# ------------------------------------------------------------------ L1


class L1Wallet:
    """The key's side of the rollup contract: faucet, deposit, claim, forced exit, escape."""

    def __init__(self, w3: Web3, deployment: Deployment, key: PrivateKey) -> None:
        self.key = key
        self.rollup: RollupClient = deployment.client(w3, Sender(w3, key=key.secret))

    @classmethod
    def connect(cls, rpc_url: str, deployment_file: Path, key: PrivateKey) -> L1Wallet:
        return cls(Web3(Web3.HTTPProvider(rpc_url)), Deployment.load(deployment_file), key)

    def balance(self) -> int:
        """Collateral tokens held on L1."""
        return self.rollup.balance(self.key.address)

    def claimable(self) -> int:
        return self.rollup.claimable(self.key.address)

    def faucet(self, amount: int) -> None:
        self.rollup.faucet(amount)

    def deposit(self, amount: int, subaccount: int = 0, owner: bytes | None = None) -> int:
        """Deposit to an L2 account (default: this key's); returns the L1 deposit id."""
        deposit_id, _ = self.rollup.deposit(owner or self.key.address, subaccount, amount)
        return deposit_id

    def claim(self) -> int:
        """Claim every verified withdrawal; returns the amount paid out."""
        amount, _ = self.rollup.claim()
        return amount

    def forced_withdrawal(
        self, amount: int, subaccount: int = 0, recipient: bytes | None = None
    ) -> int:
        """Ask L1 to make the operator serve a withdrawal; returns the request id."""
        request_id, _ = self.rollup.forced_withdrawal_request(subaccount, amount, recipient)
        return request_id

    def freeze(self, request_id: int) -> None:
        """Freeze the rollup: allowed once a forced request outlived its grace period unserved."""
        self.rollup.freeze(request_id)

    def frozen(self) -> bool:
        return self.rollup.frozen()

    def escape(self, proof: dict[str, Any]) -> int:
        """After a freeze, withdraw the account's value with its proof (`Client.proof()`)."""
        leaf = parse_hex(proof["leaf"])
        siblings = [parse_hex(s, 32) for s in proof["siblings"]]
        amount, _ = self.rollup.escape(int(proof["account_id"]), leaf, siblings)
        return amount
