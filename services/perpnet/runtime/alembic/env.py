"""Alembic environment: migrates the connection `perpnet.runtime.db.upgrade` hands over.

Run from the `alembic` command line instead, it connects to `sqlalchemy.url`
(or PERPNET_DATABASE_URL) through the same engine factory, pragmas included.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from perpnet.runtime.db import make_engine
from perpnet.runtime.models import Base


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "PERPNET_DATABASE_URL", "sqlite:///.perpnet/dev.db"
    )
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


_run()
