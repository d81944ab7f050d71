"""Read-only queries of the runtime tables: batches, proofs, deposits, withdrawals, orders.

Each table lives in the database of the service that writes it (one
PostgreSQL for all in containers; one SQLite file per service outside). The
gateway never migrates or writes them; a table that is not there yet (its
service never started) is 503, not an empty answer that would look final.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from perpnet.core.encoding import decode_order
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.orders import SignedOrder
from perpnet.core.typed_data import Domain
from perpnet.gateway.errors import unavailable
from perpnet.gateway.ports import OrderView
from perpnet.runtime.db import Database
from perpnet.runtime.models import (
    BatchRecord,
    DepositRecord,
    OrderStatus,
    ProofRecord,
    RestingOrder,
    Staged,
    WithdrawalRecord,
)

T = TypeVar("T")
SIGNATURE_BYTES = 65

# Which service's database holds each table.
OWNERS: Mapping[str, str] = {
    "batches": "sequencer",
    "proofs": "sequencer",
    "deposits": "bridge",
    "withdrawals": "bridge",
    "orders": "matcher",
}


def stages(record: Staged) -> list[dict[str, Any]]:
    """The stages a record has reached, in order, with their times."""
    return [
        {"name": str(status), "at_ms": at}
        for status, column in record.STAGES.items()
        if (at := getattr(record, column)) is not None
    ]


def _batch(b: BatchRecord) -> dict[str, Any]:
    return {
        "batch_id": b.id, "status": str(b.status), "old_root": b.old_root,
        "new_root": b.new_root, "first_seq": b.first_seq, "last_seq": b.last_seq,
        "stages": stages(b), "l1_tx": b.l1_tx,
    }  # fmt: skip


def _deposit(d: DepositRecord) -> dict[str, Any]:
    return {
        "l1_id": d.l1_id, "owner": d.owner, "subaccount": d.subaccount, "amount": d.amount,
        "status": str(d.status), "stages": stages(d), "l1_block": d.l1_block, "l1_tx": d.l1_tx,
        "batch_id": d.batch_id,
    }  # fmt: skip


def _withdrawal(w: WithdrawalRecord) -> dict[str, Any]:
    return {
        "id": w.id, "account": w.account, "recipient": w.recipient, "amount": w.amount,
        "status": str(w.status), "stages": stages(w), "batch_id": w.batch_id,
    }  # fmt: skip


def signed_order_of(data: bytes, domain: Domain) -> SignedOrder:
    """A stored `encode_order(order) + signature` back as a signed order (hash recomputed)."""
    if len(data) <= SIGNATURE_BYTES:
        raise CoreError(ErrorCode.ENCODING, "a stored order is its encoding and a signature")
    order = decode_order(data[:-SIGNATURE_BYTES])
    return SignedOrder.received(order, data[-SIGNATURE_BYTES:], domain)


class DatabaseRecords:
    """`Records` (and the matcher's order table) over the services' databases."""

    def __init__(self, urls: Mapping[str, str], domain: Domain) -> None:
        """`urls` maps a service name to its database URL."""
        self.domain = domain
        self._by_url: dict[str, Database] = {}
        self._db: dict[str, Database] = {}
        for table, service in OWNERS.items():
            url = urls[service]
            if url not in self._by_url:
                self._by_url[url] = Database(url)
            self._db[table] = self._by_url[url]

    async def _read(self, table: str, work: Callable[[Session], T]) -> T:
        try:
            return await self._db[table].run(work)
        except SQLAlchemyError as exc:
            raise unavailable(f"{table} ({OWNERS[table]} database: {type(exc).__name__})") from exc

    async def batches(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        query = select(BatchRecord).order_by(BatchRecord.id.desc()).limit(limit)
        if before is not None:
            query = query.where(BatchRecord.id < before)
        return await self._read("batches", lambda s: [_batch(b) for b in s.scalars(query)])

    async def batch(self, batch_id: int) -> dict[str, Any] | None:
        def work(s: Session) -> dict[str, Any] | None:
            found = s.get(BatchRecord, batch_id)
            return None if found is None else _batch(found)

        return await self._read("batches", work)

    async def proof(self, batch_id: int) -> dict[str, Any] | None:
        def work(s: Session) -> dict[str, Any] | None:
            p = s.get(ProofRecord, batch_id)
            if p is None:
                return None
            return {
                "batch_id": p.batch_id, "prover_id": p.prover_id, "proof": p.proof,
                "wait_ms": p.wait_ms, "prove_ms": p.prove_ms, "created_ms": p.created_ms,
            }  # fmt: skip

        return await self._read("proofs", work)

    async def deposits(self, owner: bytes | None, limit: int) -> list[dict[str, Any]]:
        query = select(DepositRecord).order_by(DepositRecord.l1_id.desc()).limit(limit)
        if owner is not None:
            query = query.where(DepositRecord.owner == owner)
        return await self._read("deposits", lambda s: [_deposit(d) for d in s.scalars(query)])

    async def deposit(self, l1_id: int) -> dict[str, Any] | None:
        def work(s: Session) -> dict[str, Any] | None:
            found = s.get(DepositRecord, l1_id)
            return None if found is None else _deposit(found)

        return await self._read("deposits", work)

    async def withdrawals(self, recipient: bytes | None, limit: int) -> list[dict[str, Any]]:
        query = select(WithdrawalRecord).order_by(WithdrawalRecord.id.desc()).limit(limit)
        if recipient is not None:
            query = query.where(WithdrawalRecord.recipient == recipient)
        return await self._read("withdrawals", lambda s: [_withdrawal(w) for w in s.scalars(query)])

    async def withdrawal(self, withdrawal_id: int) -> dict[str, Any] | None:
        def work(s: Session) -> dict[str, Any] | None:
            found = s.get(WithdrawalRecord, withdrawal_id)
            return None if found is None else _withdrawal(found)

        return await self._read("withdrawals", work)

    async def open_orders(self, owner: bytes) -> list[OrderView]:
        query = (
            select(RestingOrder)
            .where(RestingOrder.owner == owner, RestingOrder.status == OrderStatus.OPEN)
            .order_by(RestingOrder.seq)
        )
        return await self._read("orders", lambda s: [self._order(o) for o in s.scalars(query)])

    async def order(self, order_hash: bytes) -> OrderView | None:
        def work(s: Session) -> OrderView | None:
            found = s.get(RestingOrder, order_hash)
            return None if found is None else self._order(found)

        return await self._read("orders", work)

    def _order(self, row: RestingOrder) -> OrderView:
        signed = signed_order_of(row.signed_order, self.domain)
        return OrderView(signed, row.remaining, row.status)

    def close(self) -> None:
        for db in self._by_url.values():
            db.close()
