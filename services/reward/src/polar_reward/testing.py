"""Shared by the reward service's tests (and by tests elsewhere that seed its world): type
aliases of the row factories (conftest.py holds the fixtures) and a soft delete."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessionmaker = async_sessionmaker[AsyncSession]
# The rows are the other services' (Organization, Repository, Issue, User): this package may
# not name their models (tests/test_ownership.py), its tests' conftest does.
MakeOrg = Callable[..., Awaitable[Any]]
MakeRepo = Callable[..., Awaitable[Any]]
MakeIssues = Callable[..., Awaitable[list[Any]]]
MakeUser = Callable[..., Awaitable[Any]]


async def soft_delete(sessionmaker: Sessionmaker, model: Any, id: uuid.UUID) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(model).where(model.id == id).values(deleted_at=datetime.now(UTC))
        )
