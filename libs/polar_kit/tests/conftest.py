"""Fixtures of polar_kit's tests. Infrastructure (database_url, sessionmaker, nats_url,
nats_prefix, nc, js) comes from the shared plugin, polar_dev.pytest_plugin."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from polar_db.models import REPOSITORY, OutboxEvent, ProcessedMessage
from polar_dev.pytest_plugin import service_database_fixtures
from polar_kit.nats import ensure_streams
from polar_kit.settings import ServiceSettings
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# The outbox and processed-mark tables exist in each service's schema (decision 0021): the
# kit's tests use the repository service's, as the login user, since some also administer the
# database (end sessions, create tables).
engine, sessionmaker = service_database_fixtures(REPOSITORY, role="")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kit_settings(
    database_url: str, nats_url: str, nats_prefix: str, js: JetStreamContext
) -> ServiceSettings:
    settings = ServiceSettings(
        database_url=database_url,
        nats_url=nats_url,
        nats_prefix=nats_prefix,
        dev_mode=True,
        grpc_reflection=True,
        outbox_poll_seconds=0.2,
        outbox_batch_size=10,
        consumer_max_attempts=3,
        consumer_retry_base_seconds=0.1,
        consumer_retry_max_seconds=0.5,
    )
    await ensure_streams(js, settings)
    return settings


@pytest_asyncio.fixture(loop_scope="session")
async def clean_db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """Outbox and idempotency tables start empty (the database is shared by the session)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(OutboxEvent))
        await session.execute(delete(ProcessedMessage))
    yield


@pytest.fixture
def token() -> str:
    """A fresh subject token / consumer name part, so tests never see each other's messages."""
    return f"k{secrets.token_hex(4)}"
