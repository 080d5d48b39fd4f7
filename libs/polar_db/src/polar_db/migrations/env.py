"""Alembic environment: runs migrations over asyncpg. Configured by polar_db.migrate."""

import asyncio
import os

from alembic import context
from polar_db.engine import sqlalchemy_url
from polar_db.migrate import CONTEXT_OPTIONS, MIGRATION_LOCK_ID
from polar_db.models import Base
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def _database_url() -> str:
    url = config.attributes.get("url") or os.environ.get("POLAR_DATABASE_URL")
    if not url:
        raise RuntimeError(
            "no database URL: pass one to polar_db.migrate or set POLAR_DATABASE_URL"
        )
    return str(url)


url = _database_url()


def run_offline() -> None:
    context.configure(
        url=sqlalchemy_url(url),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **CONTEXT_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_sync(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, **CONTEXT_OPTIONS)
    with context.begin_transaction():
        # Serialize concurrent runs (several replicas or jobs migrating at once): the
        # second waits, then sees the version the first committed and does nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(sqlalchemy_url(url), poolclass=pool.NullPool, hide_parameters=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
