"""Database access: engines from a URL, migrations, and sessions off the event loop.

SQLite (the default outside containers) runs in WAL mode with
synchronous=FULL: a transaction that returned has been fsynced, which is
what "an acknowledged transaction survives kill -9" needs. PostgreSQL is
chosen by URL (`postgresql://...` uses psycopg 3).

SQLAlchemy sessions are blocking, so `Database.run()` executes work on one
dedicated thread: the event loop never waits on disk, and writes are
serialized in submission order (SQLite has a single writer anyway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "alembic"


def normalize_url(url: str) -> str:
    """Pick psycopg 3 for bare postgres URLs (SQLAlchemy would look for psycopg2)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        "busy_timeout=5000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; for a SQLite file, its folder is created and durability pragmas set."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`; services call this at start (it is idempotent)."""
    engine = make_engine(target) if isinstance(target, str) else target
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


class Database:
    """An engine, its session factory and the one thread that talks to it."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        # Objects stay readable after commit: they are handed back to the event loop.
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in one transaction on the database thread; commit if it returns."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._transact, work)

    def _transact(self, work: Callable[[Session], T]) -> T:
        with self.sessions.begin() as session:
            return work(session)

    async def upgrade(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, upgrade, self.engine)

    async def ping(self) -> bool:
        """Whether the database answers (for a service's ready())."""
        try:
            await self.run(lambda session: session.execute(text("SELECT 1")))
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)
