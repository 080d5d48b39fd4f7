"""Session fixtures over real PostgreSQL and NATS (loaded with `-p polar_dev.pytest_plugin`).

The servers come from POLAR_DATABASE_URL / POLAR_NATS_URL (set by `python -m polar_dev.test`,
or by CI); when unset, the plugin starts embedded ones for the session. Every run gets its own
database (`polar_test_<hex>`, migrated to head, dropped at the end) and its own NATS prefix
(`t<hex>.`, its streams deleted at the end), so concurrent runs never collide.

| fixture          | scope    | type                                |
| ---------------- | -------- | ----------------------------------- |
| polar_infra      | session  | polar_dev.infra.Infra               |
| database_url     | session  | str (the per-run database)          |
| engine           | session  | sqlalchemy AsyncEngine (all schemas; |
|                  |          | a service's own: service_database_fixtures) |
| sessionmaker     | session  | async_sessionmaker[AsyncSession]    |
| service_sessionmakers | session | {owner: async_sessionmaker}    |
| nats_url         | session  | str                                 |
| nats_prefix      | session  | str, e.g. "t3f9a0c1d2e."            |
| nc / js          | session  | nats Client / JetStreamContext      |
| github_fixtures  | session  | Path (fixtures/github)              |
| fake_github      | function | FakeGitHub (reset after each test)  |
| settings_env     | session  | dict[str, str] of POLAR_* settings  |
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from sqlalchemy.engine import make_url

from .fake_github import FakeGitHub
from .infra import Infra, infra
from .paths import github_fixtures_dir

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def plain_dsn(url: str, database: str | None = None) -> str:
    """`url` as asyncpg wants it (postgresql://, no +driver), optionally on another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def pytest_configure(config: pytest.Config) -> None:
    # Operator tools run in-process by tests must not pick up the developer's `make dev`
    # cluster (its URLs, its secrets) from `.dev/env`: /dev/null is "no file".
    os.environ["POLAR_DEV_ENV"] = os.devnull
    # See polar_dev.test: the children this process forks must reach their exec.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


@pytest.fixture(scope="session")
def polar_infra() -> Iterator[Infra]:
    with infra(ephemeral=True) as servers:
        yield servers


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(plain_dsn(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def temporary_database(server_url: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A new `polar_test_<hex>` database on the server of `server_url` (migrated to head
    unless `migrate=False`), dropped on exit; yields its URL."""
    name = f"polar_test_{secrets.token_hex(6)}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = plain_dsn(server_url, name)
        if migrate:
            from polar_db.migrate import upgrade

            # In a thread: alembic's env runs its own event loop.
            await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(polar_infra: Infra) -> AsyncIterator[str]:
    async with temporary_database(polar_infra.database_url) as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine that sees every schema (tools, migrations, cross-service checks). A
    service's tests act as the service does instead: `service_database_fixtures`."""
    from polar_db.engine import create_engine

    created = create_engine(database_url)
    yield created
    await created.dispose()


def service_database_fixtures(owner: str, role: str | None = None) -> tuple[Any, Any]:
    """`engine` and `sessionmaker` fixtures acting as service `owner` does: as its role
    (or `role`; "" the login user's), within its schema (decision 0021). In a service's
    conftest: `engine, sessionmaker = service_database_fixtures(SCHEMA)`. (Fixtures of their
    own, not a parameter of the plugin's: pytest caches a session fixture once per
    definition, and one session may run several services' tests.)"""

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
        from polar_db.engine import create_engine

        created = create_engine(database_url, owner=owner, role=role)
        yield created
        await created.dispose()

    @pytest.fixture(scope="session")
    def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        from polar_db.engine import create_sessionmaker

        return create_sessionmaker(engine)

    return engine, sessionmaker


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    from polar_db.engine import create_sessionmaker

    return create_sessionmaker(engine)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def service_sessionmakers(
    database_url: str,
) -> AsyncIterator[dict[str, async_sessionmaker[AsyncSession]]]:
    """owner -> sessions acting as that service does (its role, its schema): for tests that
    run several services in one process."""
    from polar_db.engine import create_engine, create_sessionmaker
    from polar_db.models import OWNERS

    engines = {owner: create_engine(database_url, owner=owner) for owner in OWNERS}
    yield {owner: create_sessionmaker(engine) for owner, engine in engines.items()}
    for engine in engines.values():
        await engine.dispose()


@pytest.fixture(scope="session")
def nats_url(polar_infra: Infra) -> str:
    return polar_infra.nats_url


def _ours(stream_name: str, subjects: list[str] | None, prefix: str) -> bool:
    # Stream names carry the prefix upper-cased and sanitized ("t3f9a." -> "T3F9A_..."), so
    # compare its letters and digits; subjects carry it verbatim.
    token = prefix.rstrip(".").lower()
    return stream_name.lower().startswith(token) or any(
        s.startswith(prefix) for s in subjects or []
    )


async def all_streams(js: JetStreamContext) -> list[StreamInfo]:
    """Every stream of the server: the listing API answers a page at a time (256), and a
    shared server can hold more (other runs, benchmarks)."""
    found: list[StreamInfo] = []
    while page := await js.streams_info(offset=len(found)):
        found.extend(page)
    return found


async def delete_streams(url: str, prefix: str) -> list[str]:
    """Deletes the JetStream streams of a prefix; returns their names."""
    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = client.jetstream()
        names = [
            s.config.name
            for s in await all_streams(js)
            if s.config.name and _ours(s.config.name, s.config.subjects, prefix)
        ]
        for name in names:
            await js.delete_stream(name)
        return names
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_prefix(nats_url: str) -> AsyncIterator[str]:
    prefix = f"t{secrets.token_hex(5)}."
    yield prefix
    try:
        await delete_streams(nats_url, prefix)
    except Exception as err:  # cleanup must not hide the tests' own result
        warnings.warn(f"could not delete the streams of {prefix}: {err!r}", stacklevel=1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url, connect_timeout=5)
    yield client
    with contextlib.suppress(Exception):
        await client.drain()


@pytest.fixture(scope="session")
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture(scope="session")
def github_fixtures() -> Path:
    return github_fixtures_dir()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fake_github_server(github_fixtures: Path) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(github_fixtures) as server:
        yield server


@pytest.fixture
def fake_github(fake_github_server: FakeGitHub) -> Iterator[FakeGitHub]:
    """The session's fake GitHub; overrides and recorded requests are cleared after each test."""
    yield fake_github_server
    fake_github_server.reset()


@pytest.fixture(scope="session")
def settings_env(
    database_url: str, nats_url: str, nats_prefix: str, fake_github_server: FakeGitHub
) -> dict[str, str]:
    """POLAR_* environment for a service under test (in-process settings or a subprocess)."""
    return {
        "POLAR_DATABASE_URL": database_url,
        "POLAR_NATS_URL": nats_url,
        "POLAR_NATS_PREFIX": nats_prefix,
        "POLAR_GITHUB_API_URL": fake_github_server.url,
        "POLAR_DEV_MODE": "true",
    }
