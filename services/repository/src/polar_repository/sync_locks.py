"""The advisory locks that keep one sync per repository across replicas.

A sync holds a PostgreSQL session-level advisory lock keyed by its repository for as long as
it runs. A runner's locks live on one dedicated connection (not a pooled one, so they are
never handed back to the pool still held); if that connection drops, or the process dies,
every lock it held is free for another replica, and `check` (run in each page's transaction)
makes the sync stop before writing anything more. The same connection LISTENs for new jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import sync_jobs

LOCK_NAMESPACE = b"polar.repository.sync:"


class LockLost(Exception):
    """The advisory lock's connection went away: another replica may be syncing now."""


def lock_key(repository_id: uuid.UUID) -> int:
    """The advisory lock key (bigint) of a repository's sync; namespaced by hashing so it
    cannot collide with other users of advisory locks in the same database."""
    digest = hashlib.sha256(LOCK_NAMESPACE + repository_id.bytes).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SyncLocks:
    def __init__(self, dsn: str, on_notify: Callable[[], None]) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self._conn: asyncpg.Connection | None = None
        self._pid = 0
        self._guard = asyncio.Lock()  # one query at a time on the connection

    async def listen(self) -> None:
        """Connects (and so LISTENs for new jobs) unless connected."""
        async with self._guard:
            await self._connect()

    async def try_lock(self, key: int) -> bool:
        return await self._locking("pg_try_advisory_lock", key)

    async def unlock(self, key: int) -> None:
        await self._locking("pg_advisory_unlock", key)

    async def check(self, session: AsyncSession, key: int) -> None:
        """Raises LockLost unless this runner's connection still holds the lock."""
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
        held = await session.scalar(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = :pid AND classid::bigint = :hi AND objid::bigint = :lo"
                " AND objsubid = 1 AND granted)"
            ),
            {"pid": self._pid, "hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF},
        )
        if not held:
            raise LockLost(f"advisory lock {key} is no longer held")

    async def close(self) -> None:
        """Closes the connection, releasing every lock it holds."""
        async with self._guard:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def _connect(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(sync_jobs.CHANNEL, lambda *_: self._on_notify())
            self._conn, self._pid = conn, conn.get_server_pid()
        return conn

    async def _locking(self, function: str, key: int) -> bool:
        async with self._guard:
            for attempt in (1, 2):
                conn = self._conn
                if conn is None or conn.is_closed():
                    if function == "pg_advisory_unlock":
                        return False  # the connection is gone, and every lock it held
                    conn = await self._connect()
                try:
                    return bool(await conn.fetchval(f"SELECT {function}($1::bigint)", key))
                except Exception:
                    # Nothing but a broken connection fails these: drop it (its locks are gone
                    # already; their syncs notice at their next page) and connect once more.
                    self._conn = None
                    conn.terminate()
                    if attempt == 2 or function == "pg_advisory_unlock":
                        raise
        raise AssertionError("unreachable")
