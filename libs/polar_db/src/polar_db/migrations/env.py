"""Alembic environment: runs migrations over asyncpg. Configured by polar_db.migrate.

`owner` None: the shared history (public.alembic_version, closed at the schema split);
otherwise a service's history, compared against that service's tables only and recorded in
`<owner>.alembic_version`. After a service's migrations its role is (re)granted its schema.
"""

import asyncio
import os
from typing import Any

from alembic import context
from polar_db.engine import sqlalchemy_url
from polar_db.migrate import CONTEXT_OPTIONS, MIGRATION_LOCK_ID
from polar_db.models import Base, metadata_of, role_of
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
owner: str | None = config.attributes.get("owner")


def _database_url() -> str:
    url = config.attributes.get("url") or os.environ.get("POLAR_DATABASE_URL")
    if not url:
        raise RuntimeError(
            "no database URL: pass one to polar_db.migrate or set POLAR_DATABASE_URL"
        )
    return str(url)


url = _database_url()


def _options() -> dict[str, Any]:
    if owner is None:
        return {"target_metadata": Base.metadata, **CONTEXT_OPTIONS}
    metadata: MetaData = metadata_of(owner)

    def ours(name: str | None, type_: str, parent_names: Any) -> bool:
        # Autogenerate looks at this service's schema only; the version table is Alembic's.
        if type_ == "schema":
            return name == owner
        return not (type_ == "table" and name == "alembic_version")

    return {
        "target_metadata": metadata,
        "version_table_schema": owner,
        "include_schemas": True,
        "include_name": ours,
        **CONTEXT_OPTIONS,
    }


def grant(connection: Connection, owner: str) -> None:
    """The service's role: created when missing (which needs CREATEROLE; a deployment may
    create it beforehand), allowed to read and write its schema's tables and nothing else,
    not even its migration version."""
    role = role_of(owner)
    exists = connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    if not exists:
        # Roles are per server, not per database: concurrent test databases may race here.
        connection.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
        )
    for statement in (
        f"GRANT USAGE ON SCHEMA {owner} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {owner} TO {role}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {owner} TO {role}",
        f"REVOKE ALL ON {owner}.alembic_version FROM {role}",
    ):
        connection.execute(text(statement))


def run_offline() -> None:
    context.configure(
        url=sqlalchemy_url(url),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_sync(connection: Connection) -> None:
    context.configure(connection=connection, **_options())
    with context.begin_transaction():
        # Serialize concurrent runs (several replicas or jobs migrating at once): the
        # second waits, then sees the version the first committed and does nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        if owner is not None:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {owner}"))
        context.run_migrations()
        if owner is not None and connection.scalar(
            text("SELECT to_regclass(:t)"), {"t": f"{owner}.alembic_version"}
        ):
            grant(connection, owner)


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
