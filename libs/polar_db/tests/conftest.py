"""`database_url` and `engine` come from polar_dev.pytest_plugin; the migration tests also
need a database with no tables at all."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from polar_dev.infra import Infra
from polar_dev.pytest_plugin import temporary_database


@pytest.fixture
async def empty_database_url(polar_infra: Infra) -> AsyncIterator[str]:
    async with temporary_database(polar_infra.database_url, migrate=False) as url:
        yield url
