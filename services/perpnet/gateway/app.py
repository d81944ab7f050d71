"""The gateway's FastAPI application: REST under /v1, WebSocket streams under /v1/ws.

Every write is signed: the gateway rebuilds the core object from the posted
fields, recomputes its typed-data digest, checks it statically and checks the
signature before anything is forwarded, so a bad request is refused here and
changes nothing anywhere; an order's signature is the matcher's to check (it
must anyway), and its refusal comes back as the same 401. Reads come from the
sequencer's state (or a replica) and from the runtime tables.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, WebSocket
from fastapi import Path as Path_
from fastapi.responses import JSONResponse
from prometheus_client import Histogram
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perpnet import __version__
from perpnet.core.encoding import check_fields
from perpnet.core.errors import CoreError, ErrorCode, require
from perpnet.core.orders import ORDER_TYPE, Order, SignedOrder
from perpnet.core.txs import SignedRequest, Transfer, Withdraw
from perpnet.gateway.errors import HANDLERS, invalid_fields, not_found, refusal
from perpnet.gateway.ports import AccountView, Backend
from perpnet.gateway.schemas import (
    AccountOut,
    BalanceOut,
    BatchOut,
    BatchProofOut,
    BookOut,
    CancelledOut,
    CancelOrder,
    DepositOut,
    DomainOut,
    ErrorBody,
    ErrorOut,
    FundingOut,
    MarketOut,
    OrderAckOut,
    OrderOut,
    PlacedBatchOut,
    PlacedOut,
    PlaceOrder,
    PlaceOrders,
    PositionOut,
    PriceOut,
    ProofOut,
    StateOut,
    SubmittedOut,
    TradeOut,
    TransferRequest,
    WithdrawalOut,
    WithdrawRequest,
    account_out,
    hex0x,
    jsonable,
    positions_of,
    risk_out,
)
from perpnet.gateway.settings import GatewaySettings
from perpnet.gateway.signing import CANCEL_TYPE
from perpnet.gateway.streams import Hub, account_topic, book_topic, pump, trades_topic
from perpnet.runtime.clock import now_ms

REQUEST_SECONDS = Histogram(
    "gateway_http_request_duration_seconds",
    "REST request latency by route and status (order acks are POST /v1/orders).",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 422, 503)
}
Limit = Annotated[int, Query(ge=1, le=1000)]
MAX_ID = 2**63 - 1
CLOSE_POLICY = 1008  # WebSocket close code: the request was refused
Subaccount = Annotated[int, Query(ge=0, lt=2**32)]
RecordId = Annotated[int, Path_(ge=0, le=MAX_ID)]


class MeasureRequests:
    """REQUEST_SECONDS by method, route and status: a plain ASGI middleware, which costs
    far less per request than an `@app.middleware("http")` one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_SECONDS.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - started
            )


def _failed(status: int, content: dict[str, Any]) -> PlacedOut:
    return PlacedOut(status=status, error=ErrorBody(**content["error"]))


def parse_address(text: str) -> bytes:
    if text.startswith("0x") and len(text) == 42:
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    raise CoreError(ErrorCode.INVALID_FIELD, f"{text!r} is not a 0x-hex 20-byte address")


def create_app(
    backend: Backend,
    settings: GatewaySettings,
    *,
    hub: Hub | None = None,
    clock: Callable[[], int] = now_ms,
) -> FastAPI:
    """The application over `backend`; `clock` (ms) judges expiries."""
    domain = settings.domain()
    markets = backend.markets
    hub = hub or Hub(settings.ws_queue, settings.recent_trades)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await backend.start(hub)
        try:
            yield
        finally:
            await backend.close()

    app = FastAPI(
        title="perpnet gateway",
        version=__version__,
        description="REST and WebSocket API of the perpnet exchange. Amounts are integer "
        "quantums as decimal strings; writes are EIP-712 signed (see GET /v1/info).",
        lifespan=lifespan,
        responses=ERRORS,
    )
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    app.state.hub = hub
    app.state.backend = backend

    app.add_middleware(MeasureRequests)

    async def account_view(account: str, subaccount: int) -> AccountView:
        if account.isdecimal():
            account_id = int(account)
            require(account_id < 2**32, ErrorCode.INVALID_FIELD, "account id is a u32")
            return await backend.sequencer.account(account_id)
        return await backend.sequencer.account_of(parse_address(account), subaccount)

    def signed_order(body: PlaceOrder) -> SignedOrder:
        """Checked but for its signature: the matcher (every backend's) verifies that, and
        a refusal comes back as the same 401. One ecrecover per order instead of two."""
        order: Order = body.to_order()
        order.validate(markets.get(order.market_id))
        require(order.expiry_ms >= clock(), ErrorCode.EXPIRED, "order expired")
        return SignedOrder.received(order, body.signature, domain)

    def checked_order(item: dict[str, Any]) -> SignedOrder | PlacedOut:
        """One order of a batch: signed and checked, or its refusal."""
        try:
            return signed_order(PlaceOrder.model_validate(item))
        except ValidationError as exc:
            return _failed(400, invalid_fields(exc.errors()))
        except CoreError as exc:
            return _failed(*refusal(exc))

    def checked_request(tx: Withdraw | Transfer) -> None:
        check_fields(tx)
        require(tx.amount > 0, ErrorCode.INVALID_FIELD, "amount must be positive")
        require(tx.expiry_ms >= clock(), ErrorCode.EXPIRED, "request expired")
        request: SignedRequest = tx
        request.verify(domain)

    # ------------------------------------------------------------ service

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    async def readyz() -> JSONResponse:
        """Readiness: the backends answer."""
        ok = await backend.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v1/info", tags=["service"])
    async def info() -> DomainOut:
        """The EIP-712 domain and type strings every signed request must use."""
        types = {
            s.name: s.signature for s in (ORDER_TYPE, Withdraw.STRUCT, Transfer.STRUCT, CANCEL_TYPE)
        }
        return DomainOut(
            name=domain.name,
            version=domain.version,
            chain_id=domain.chain_id,
            verifying_contract=domain.verifying_contract,
            types=types,
        )

    @app.get("/v1/state", tags=["state"])
    async def state() -> StateOut:
        """The L2 state summary: root, last transaction, last batch."""
        s = await backend.sequencer.summary()
        return StateOut(
            root=s.root, last_seq=s.last_seq, next_batch_id=s.next_batch_id, clock_ms=s.clock_ms,
            total_deposited=s.total_deposited, total_withdrawn=s.total_withdrawn,
        )  # fmt: skip

    # ------------------------------------------------------------ markets

    @app.get("/v1/markets", tags=["markets"])
    async def list_markets() -> list[MarketOut]:
        return [MarketOut.of(m) for m in markets.markets]

    @app.get("/v1/markets/{market_id}", tags=["markets"])
    async def get_market(market_id: int) -> MarketOut:
        return MarketOut.of(markets.get(market_id))

    @app.get("/v1/markets/{market_id}/book", tags=["markets"])
    async def get_book(
        market_id: int, levels: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> BookOut:
        """Order book depth: aggregated (price, size) levels, best first."""
        markets.get(market_id)
        return BookOut.of(await backend.matcher.book(market_id, levels))

    @app.get("/v1/markets/{market_id}/trades", tags=["markets"])
    async def get_trades(market_id: int, limit: Limit = 100) -> list[TradeOut]:
        """The market's recent trades seen by this gateway, newest first."""
        markets.get(market_id)
        return [TradeOut(**t) for t in hub.recent(trades_topic(market_id), limit)]

    @app.get("/v1/prices", tags=["markets"])
    async def get_prices() -> list[PriceOut]:
        """The oracle price of every market (from the last applied price tick)."""
        s = await backend.sequencer.summary()
        return [
            PriceOut(market_id=m, price=g.price or None, timestamp_ms=g.price_time_ms)
            for m, g in sorted(s.markets.items())
        ]

    @app.get("/v1/markets/{market_id}/price", tags=["markets"])
    async def get_price(market_id: int) -> PriceOut:
        markets.get(market_id)
        g = (await backend.sequencer.summary()).markets[market_id]
        return PriceOut(market_id=market_id, price=g.price or None, timestamp_ms=g.price_time_ms)

    @app.get("/v1/markets/{market_id}/funding", tags=["markets"])
    async def get_funding(market_id: int) -> FundingOut:
        """The market's cumulative funding index and the time of the last funding tick."""
        markets.get(market_id)
        s = await backend.sequencer.summary()
        return FundingOut(
            market_id=market_id,
            funding_index=s.markets[market_id].funding_index,
            last_funding_ms=s.last_funding_ms,
        )

    # ------------------------------------------------------------ accounts

    @app.get("/v1/accounts/{account}", tags=["accounts"])
    async def get_account(account: str, subaccount: Subaccount = 0) -> AccountOut:
        """An account by 0x address (and ?subaccount) or by decimal account id."""
        view = await account_view(account, subaccount)
        return account_out(view, await backend.sequencer.summary(), markets)

    @app.get("/v1/accounts/{account}/balances", tags=["accounts"])
    async def get_balances(account: str, subaccount: Subaccount = 0) -> BalanceOut:
        view = await account_view(account, subaccount)
        risk = risk_out(view.account, await backend.sequencer.summary(), markets)
        return BalanceOut(
            account_id=view.account.account_id,
            collateral=view.account.collateral,
            free_collateral=None if risk is None else risk.free_collateral,
        )

    @app.get("/v1/accounts/{account}/positions", tags=["accounts"])
    async def get_positions(account: str, subaccount: Subaccount = 0) -> list[PositionOut]:
        return positions_of((await account_view(account, subaccount)).account)

    @app.get("/v1/accounts/{account}/orders", tags=["accounts", "orders"])
    async def get_account_orders(account: str) -> list[OrderOut]:
        """The owner's open orders (every subaccount), in placement order."""
        orders = await backend.matcher.open_orders(parse_address(account))
        return [OrderOut.of(o) for o in orders]

    @app.get("/v1/accounts/{account}/proof", tags=["accounts"])
    async def get_account_proof(account: str, subaccount: Subaccount = 0) -> ProofOut:
        """The account's leaf and Merkle path to the accounts root (the escape hatch's input)."""
        view = await account_view(account, subaccount)
        return ProofOut(
            account_id=view.account.account_id,
            leaf=hex0x(view.leaf),
            root=view.root,
            siblings=list(view.proof),
        )

    # ------------------------------------------------------------ orders

    @app.post("/v1/orders", tags=["orders"])
    async def place_order(body: PlaceOrder) -> OrderAckOut:
        """Place a signed order: the fields of EIP-712 `Order` and its signature."""
        return OrderAckOut.of(await backend.matcher.place(signed_order(body)))

    @app.post("/v1/orders/batch", tags=["orders"])
    async def place_orders(body: PlaceOrders) -> PlacedBatchOut:
        """Place up to 100 signed orders in one request, matched in the order given.

        Each order is checked and placed on its own: its result carries the status
        POST /v1/orders would have answered for it (200 with its `ack`, or a 4xx/5xx
        with its `error`), so one bad order refuses only itself. The request itself
        is 200 whenever it is a list of 1 to 100 objects.
        """
        checked = [checked_order(item) for item in body.orders]
        valid = [c for c in checked if isinstance(c, SignedOrder)]
        acks = iter(await backend.matcher.place_many(valid) if valid else ())
        results: list[PlacedOut] = []
        for c in checked:
            if isinstance(c, PlacedOut):
                results.append(c)
                continue
            ack = next(acks)
            if isinstance(ack, Exception):
                results.append(_failed(*refusal(ack)))
            else:
                results.append(PlacedOut(status=200, ack=OrderAckOut.of(ack)))
        return PlacedBatchOut(results=results)

    @app.get("/v1/orders/{order_hash}", tags=["orders"])
    async def get_order(order_hash: str) -> OrderOut:
        found = await backend.matcher.order(parse_hash(order_hash))
        if found is None:
            raise not_found(f"order {order_hash}")
        return OrderOut.of(found)

    @app.post("/v1/orders/{order_hash}/cancel", tags=["orders"])
    async def cancel_order(order_hash: str, body: CancelOrder) -> CancelledOut:
        """Cancel with a signed `Cancel(owner, orderHash, expiry)`."""
        cancel = body.to_cancel(parse_hash(order_hash))
        cancel.verify(domain, clock())
        return CancelledOut.of(await backend.matcher.cancel(cancel.order_hash, cancel.owner))

    @app.post("/v1/orders/{order_hash}/amend", tags=["orders"])
    async def amend_order(order_hash: str, body: PlaceOrder) -> OrderAckOut:
        """Cancel-replace atomically with a new signed order of the same owner."""
        old = parse_hash(order_hash)
        return OrderAckOut.of(await backend.matcher.amend(old, signed_order(body)))

    # ------------------------------------------------------------ collateral

    @app.post("/v1/withdrawals", tags=["collateral"])
    async def withdraw(body: WithdrawRequest) -> SubmittedOut:
        """Withdraw to L1 with a signed `Withdraw`; claimable once its batch is verified."""
        tx = body.to_tx(clock())
        checked_request(tx)
        seq, tx_hash = await backend.sequencer.submit(tx)
        return SubmittedOut(seq=seq, tx_hash=tx_hash)

    @app.post("/v1/transfers", tags=["collateral"])
    async def transfer(body: TransferRequest) -> SubmittedOut:
        """Move collateral between L2 accounts with a signed `Transfer`."""
        tx = body.to_tx(clock())
        checked_request(tx)
        seq, tx_hash = await backend.sequencer.submit(tx)
        return SubmittedOut(seq=seq, tx_hash=tx_hash)

    @app.get("/v1/withdrawals", tags=["collateral"])
    async def list_withdrawals(
        recipient: str | None = None, limit: Limit = 100
    ) -> list[WithdrawalOut]:
        """Withdrawals, newest first, each with the time of every stage it reached."""
        who = None if recipient is None else parse_address(recipient)
        return [WithdrawalOut(**w) for w in await backend.records.withdrawals(who, limit)]

    @app.get("/v1/withdrawals/{withdrawal_id}", tags=["collateral"])
    async def get_withdrawal(
        withdrawal_id: RecordId,
    ) -> WithdrawalOut:
        found = await backend.records.withdrawal(withdrawal_id)
        if found is None:
            raise not_found(f"withdrawal {withdrawal_id}")
        return WithdrawalOut(**found)

    @app.get("/v1/deposits", tags=["collateral"])
    async def list_deposits(owner: str | None = None, limit: Limit = 100) -> list[DepositOut]:
        """L1 deposits, newest first: seen, confirmed, credited on L2, verified."""
        who = None if owner is None else parse_address(owner)
        return [DepositOut(**d) for d in await backend.records.deposits(who, limit)]

    @app.get("/v1/deposits/{l1_id}", tags=["collateral"])
    async def get_deposit(l1_id: RecordId) -> DepositOut:
        found = await backend.records.deposit(l1_id)
        if found is None:
            raise not_found(f"deposit {l1_id}")
        return DepositOut(**found)

    # ------------------------------------------------------------ batches

    @app.get("/v1/batches", tags=["batches"])
    async def list_batches(
        limit: Limit = 100, before: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None
    ) -> list[BatchOut]:
        """Batches, newest first, with their roots and the time of each stage."""
        return [BatchOut(**b) for b in await backend.records.batches(limit, before)]

    @app.get("/v1/batches/{batch_id}", tags=["batches"])
    async def get_batch(batch_id: RecordId) -> BatchOut:
        found = await backend.records.batch(batch_id)
        if found is None:
            raise not_found(f"batch {batch_id}")
        return BatchOut(**found)

    @app.get("/v1/batches/{batch_id}/proof", tags=["batches"])
    async def get_batch_proof(batch_id: RecordId, include_proof: bool = False) -> BatchProofOut:
        """The batch's STARK proof record (the proof bytes only with ?include_proof=true)."""
        found = await backend.records.proof(batch_id)
        if found is None:
            raise not_found(f"proof of batch {batch_id}")
        proof: bytes = found.pop("proof")
        return BatchProofOut(
            **found, proof_bytes=len(proof), proof=hex0x(proof) if include_proof else None
        )

    # ------------------------------------------------------------ streams

    async def accepted(ws: WebSocket, market_id: int) -> bool:
        """Accept a market stream, or close it (1008) if there is no such market."""
        if market_id not in markets.by_id:
            await ws.close(CLOSE_POLICY, f"no market {market_id}")
            return False
        await ws.accept()
        return True

    @app.websocket("/v1/ws/book/{market_id}")
    async def ws_book(ws: WebSocket, market_id: int) -> None:
        """The market's book: a snapshot, then a new one after every change."""
        if not await accepted(ws, market_id):
            return
        book = await backend.matcher.book(market_id, settings.book_levels)
        await pump(ws, hub, book_topic(market_id), jsonable(BookOut.of(book)))

    @app.websocket("/v1/ws/trades/{market_id}")
    async def ws_trades(ws: WebSocket, market_id: int) -> None:
        """Every trade of the market from now on."""
        if await accepted(ws, market_id):
            await pump(ws, hub, trades_topic(market_id), None)

    @app.websocket("/v1/ws/account/{address}")
    async def ws_account(ws: WebSocket, address: str) -> None:
        """The owner's accounts after every transaction that changes one of them."""
        try:
            owner = parse_address(address)
        except CoreError as exc:
            await ws.close(CLOSE_POLICY, exc.message[:120])
            return
        await ws.accept()
        await pump(ws, hub, account_topic(owner), None)

    return app


def parse_hash(text: str) -> bytes:
    if text.startswith("0x") and len(text) == 66:
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    raise CoreError(ErrorCode.INVALID_FIELD, f"{text!r} is not a 0x-hex 32-byte hash")
