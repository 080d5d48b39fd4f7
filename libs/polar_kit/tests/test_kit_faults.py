"""polar_kit.errors.classify on errors produced by a real PostgreSQL through SQLAlchemy + asyncpg.

Only one error is simulated: 57P03 ("the database system is starting up"), which a running
server cannot be made to send on demand. It is raised by asyncpg's own exception class at
the driver's connect, so SQLAlchemy wraps it exactly as it wraps the real one (a plain
DBAPIError whose `.orig` carries the SQLSTATE).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from polar_db.engine import asyncpg_dsn, create_engine, sqlalchemy_url
from polar_kit.errors import PERMANENT, TRANSIENT, UNKNOWN, Fault, classify
from polar_kit.outage import brief
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

asyncio_test = pytest.mark.asyncio(loop_scope="session")


def unpooled(url: str, **kw: Any) -> AsyncEngine:
    """An engine that connects for every use (so each use meets the server's answer)."""
    return create_async_engine(sqlalchemy_url(url), poolclass=NullPool, **kw)


async def error_of(action: Callable[[], Awaitable[Any]]) -> BaseException:
    try:
        await action()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


async def in_savepoint(conn: AsyncConnection, sql: str, **params: Any) -> BaseException:
    async def run() -> None:
        async with conn.begin_nested():
            await conn.execute(text(sql), params)

    return await error_of(run)


@asyncio_test
async def test_data_errors_are_permanent(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(
                text("CREATE TEMP TABLE t (i int, b bigint, s text, j jsonb, u int UNIQUE)")
            )
            cases: dict[str, tuple[str, dict[str, Any]]] = {
                "int out of range": ("INSERT INTO t (i) VALUES (:v)", {"v": 2**40}),
                "bigint out of range": ("INSERT INTO t (b) VALUES (:v)", {"v": 2**70}),
                "NUL in a text": ("INSERT INTO t (s) VALUES (:v)", {"v": "a\x00b"}),
                "NUL in JSON": ("INSERT INTO t (j) VALUES (CAST(:v AS jsonb))", {"v": '"\\u0000"'}),
                "division by zero": ("SELECT 1 / :v", {"v": 0}),
            }
            for name, (sql, params) in cases.items():
                exc = await in_savepoint(conn, sql, **params)
                assert classify(exc) == PERMANENT, (name, brief(exc))
            # A unique clash may be a race (two renames seen out of order): a bounded retry.
            await conn.execute(text("INSERT INTO t (u) VALUES (1)"))
            exc = await in_savepoint(conn, "INSERT INTO t (u) VALUES (1)")
            assert classify(exc) == UNKNOWN
            await conn.rollback()
    finally:
        await engine.dispose()


def test_deep_json_is_permanent() -> None:
    # orjson (the gateway) accepts nesting that json.loads cannot parse.
    exc = RecursionError()
    try:
        json.loads("[" * 100_000 + "]" * 100_000)
    except RecursionError as e:
        exc = e
    assert classify(exc) == PERMANENT
    assert classify(RuntimeError("bug")) == UNKNOWN


@asyncio_test
async def test_outages_are_transient(database_url: str) -> None:
    # Terminated by an administrator (57P01, as in a fast shutdown), mid-query.
    engine = create_engine(database_url)
    try:
        async with engine.connect() as victim, engine.connect() as admin:
            pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            query = asyncio.create_task(victim.execute(text("SELECT pg_sleep(10)")))
            await asyncio.sleep(0.3)
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            terminated = await error_of(lambda: query)
        assert classify(terminated) == TRANSIENT, brief(terminated)

        # A read-only transaction, as on a primary that failed over to a replica (25006).
        async with engine.connect() as conn:
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            read_only = await error_of(lambda: conn.execute(text("CREATE TEMP TABLE x (i int)")))
        assert classify(read_only) == TRANSIENT, brief(read_only)

        # Too many connections (53300): a role allowed none.
        role = f"r{secrets.token_hex(4)}"
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
        try:
            limited = unpooled(database_url.replace("postgres@", f"{role}@", 1))
            too_many = await error_of(limited.connect)
            await limited.dispose()
        finally:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP ROLE {role}"))
        assert classify(too_many) == TRANSIENT, brief(too_many)

        # A deadlock (40P01) between two real transactions.
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE IF NOT EXISTS dl (i int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO dl VALUES (1), (2) ON CONFLICT DO NOTHING"))
        async with engine.connect() as a, engine.connect() as b:
            await a.execute(text("UPDATE dl SET i = i WHERE i = 1"))
            await b.execute(text("UPDATE dl SET i = i WHERE i = 2"))
            results = await asyncio.gather(
                a.execute(text("UPDATE dl SET i = i WHERE i = 2")),
                b.execute(text("UPDATE dl SET i = i WHERE i = 1")),
                return_exceptions=True,
            )
            (deadlock,) = [r for r in results if isinstance(r, BaseException)]
        assert classify(deadlock) == TRANSIENT, brief(deadlock)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE dl"))
    finally:
        await engine.dispose()

    # Nothing listening (connection refused).
    nowhere = unpooled("postgresql://postgres@127.0.0.1:1/x")
    refused = await error_of(nowhere.connect)
    assert classify(refused) == TRANSIENT


@asyncio_test
async def test_starting_up_57p03_is_transient_through_sqlalchemy(database_url: str) -> None:
    async def starting_up(**_: Any) -> Any:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")

    engine = unpooled(database_url, async_creator=starting_up)
    exc = await error_of(engine.connect)
    # SQLAlchemy's wrapper says nothing; the SQLSTATE is on .orig.
    assert type(exc).__name__ == "DBAPIError"
    assert classify(exc) == TRANSIENT
    assert brief(exc) == "[57P03] CannotConnectNowError: the database system is starting up"
    # The real connect path still works (asyncpg_dsn is what the relay uses).
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.close()


def test_fault_values() -> None:
    assert {f.value for f in Fault} == {"transient", "permanent", "unknown"}
