"""The matcher's durable record of orders: one `RestingOrder` row per accepted order.

Live rows (OPEN resting, PENDING conditional) rebuild the book after a
restart, in `seq` order (time priority); terminal rows (FILLED, CANCELLED,
EXPIRED) are kept until the order's expiry so a replayed order is still
refused after a restart, then deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from perpnet.core.encoding import decode_order, encode_order
from perpnet.core.orders import SignedOrder
from perpnet.core.typed_data import Domain
from perpnet.runtime.db import Database
from perpnet.runtime.models import OrderStatus, RestingOrder

SIGNATURE_BYTES = 65
LIVE = (OrderStatus.OPEN, OrderStatus.PENDING)


@dataclass(frozen=True, slots=True)
class OrderRow:
    """What one row says about one order."""

    signed: SignedOrder
    seq: int
    remaining: int
    status: OrderStatus


def pack(signed: SignedOrder) -> bytes:
    return encode_order(signed.order) + signed.signature


def unpack(data: bytes, domain: Domain) -> SignedOrder:
    order = decode_order(data[:-SIGNATURE_BYTES])
    return SignedOrder.received(order, data[-SIGNATURE_BYTES:], domain)


class OrderStore:
    """Reads and writes order rows; every write is one database transaction."""

    def __init__(self, db: Database, domain: Domain) -> None:
        self.db = db
        self.domain = domain

    async def load(self) -> tuple[list[OrderRow], int]:
        """Every row (live ones in seq order first) and the highest seq used."""

        def read(session: Session) -> tuple[list[OrderRow], int]:
            records = session.scalars(select(RestingOrder).order_by(RestingOrder.seq)).all()
            top = session.scalar(select(func.max(RestingOrder.seq))) or 0
            rows = [
                OrderRow(unpack(r.signed_order, self.domain), r.seq, r.remaining, r.status)
                for r in records
            ]
            return rows, top

        return await self.db.run(read)

    async def write(self, rows: Sequence[OrderRow], now_ms: int) -> None:
        """Insert or update `rows`, all or none."""
        if rows:
            await self.db.run(lambda session: _upsert(session, rows, now_ms))

    async def forget(self, hashes: Iterable[bytes]) -> None:
        """Delete terminal rows (their orders expired: replays are refused as EXPIRED anyway)."""
        doomed = list(hashes)
        if doomed:
            await self.db.run(
                lambda session: session.execute(
                    delete(RestingOrder).where(
                        RestingOrder.hash.in_(doomed), RestingOrder.status.not_in(LIVE)
                    )
                )
            )


def _upsert(session: Session, rows: Sequence[OrderRow], now_ms: int) -> None:
    for row in rows:
        signed = row.signed
        record = session.get(RestingOrder, signed.hash)
        if record is None:
            session.add(
                RestingOrder(
                    hash=signed.hash,
                    signed_order=pack(signed),
                    market_id=signed.order.market_id,
                    owner=signed.order.owner,
                    seq=row.seq,
                    remaining=row.remaining,
                    status=row.status,
                    created_ms=now_ms,
                    updated_ms=now_ms,
                )
            )
        else:
            record.seq = row.seq
            record.remaining = row.remaining
            record.status = row.status
            record.updated_ms = now_ms
        session.flush()  # row by row: a seq may move from one row to the next
