import asyncio
import os
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from polar_db.engine import create_engine
from polar_db.migrate import CONTEXT_OPTIONS, downgrade, upgrade
from polar_db.models import Base
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    expected = set(Base.metadata.tables) | {"alembic_version"}
    upgrade(empty_database_url)
    assert await _tables(empty_database_url) == expected
    downgrade(empty_database_url)
    assert await _tables(empty_database_url) == {"alembic_version"}
    upgrade(empty_database_url)
    assert await _tables(empty_database_url) == expected


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts=CONTEXT_OPTIONS)
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def _cli(url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polar_db.migrate",
        *args,
        env={**os.environ, "POLAR_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_concurrent_cli_upgrades_serialize(empty_database_url: str) -> None:
    results = await asyncio.gather(*(_cli(empty_database_url, "upgrade") for _ in range(3)))
    assert all(code == 0 for code, _ in results), results
    code, out = await _cli(empty_database_url, "current")
    assert code == 0
    assert "(head)" in out
