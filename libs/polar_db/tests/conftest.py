"""Stand-in fixtures until polar_dev.pytest_plugin provides `database_url` and `engine`.

`empty_database_url` (a database with no tables) stays local: migration tests need one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from polar_db.engine import asyncpg_dsn, create_engine
from polar_db.migrate import upgrade
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

SERVER_URL = os.environ.get("POLAR_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(statement: str) -> None:
    dsn = asyncpg_dsn(make_url(SERVER_URL).set(database="postgres").render_as_string(False))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _temporary_database() -> AsyncIterator[str]:
    name = f"polar_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    async for url in _temporary_database():
        yield url


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async for url in _temporary_database():
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
