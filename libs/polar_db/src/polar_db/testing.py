"""Row builders for tests: valid rows with random unique keys, so tests can share one
database. Override any column with keyword arguments."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from polar_db.models import OWNERS, IssueState, OrganizationStatus, Platform


def external_id() -> int:
    return random.randint(1, 2**53)


def organization_row(**overrides: Any) -> dict[str, Any]:
    return {
        "platform": Platform.github,
        "name": f"org-{uuid.uuid4().hex[:10]}",
        "external_id": external_id(),
        "avatar_url": "https://avatars.example/1",
        "is_personal": False,
        "installation_id": external_id(),
        "installation_updated_at": datetime(2024, 1, 1, tzinfo=UTC),
        "status": OrganizationStatus.active,
        **overrides,
    }


def repository_row(organization_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "platform": Platform.github,
        "external_id": external_id(),
        "organization_id": organization_id,
        "name": f"repo-{uuid.uuid4().hex[:10]}",
        "is_private": False,
        **overrides,
    }


def issue_row(
    organization_id: uuid.UUID, repository_id: uuid.UUID, number: int, **overrides: Any
) -> dict[str, Any]:
    return {
        "platform": Platform.github,
        "external_id": external_id(),
        "organization_id": organization_id,
        "repository_id": repository_id,
        "number": number,
        "title": f"issue {number}",
        "state": IssueState.open,
        "issue_created_at": datetime(2024, 1, 1, tzinfo=UTC),
        **overrides,
    }


# Tests that look at the whole database as one (cluster and chaos tests): every service's
# tables by their names, and each service's outbox and processed marks as one.
SEARCH_PATH_ALL = ", ".join(OWNERS)


def all_services_views() -> str:
    """SQL creating temporary views `outbox_events` and `processed_messages` over every
    service's own (decision 0021); run it on a connection with SEARCH_PATH_ALL."""
    return ";\n".join(
        f"CREATE TEMP VIEW {table} AS "
        + " UNION ALL ".join(f"SELECT * FROM {owner}.{table}" for owner in OWNERS)
        for table in ("outbox_events", "processed_messages")
    )
