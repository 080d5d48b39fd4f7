"""The queries of the repository domain, and nothing else.

Soft-deleted rows (deleted_at set) are invisible to every read here. Lists are keyset
paged: each takes the sort key of the last row of the previous page (`after`) and a
`limit` (the page size + 1, so the caller learns whether another page follows without
counting), and never loads more rows than that.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from polar_db.models import IssueState, OrganizationStatus, Platform
from polar_db.models.repository import (
    Issue,
    KnownOrganization,
    PullRequest,
    Repository,
)
from polar_db.upsert import Upserted, upsert_many
from sqlalchemy.ext.asyncio import AsyncSession

from . import listing

# --- organizations (this service's read model of them: known.py) ----------------------------


async def organization_status(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationStatus | None:
    return await session.scalar(
        sa.select(KnownOrganization.status).where(KnownOrganization.id == organization_id)
    )


async def live_organization_ids(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await session.scalars(
        sa.select(KnownOrganization.id).where(
            KnownOrganization.id.in_(ids), KnownOrganization.deleted_at.is_(None)
        )
    )
    return set(rows)


async def rekey_organization(session: AsyncSession, old: uuid.UUID, new: uuid.UUID) -> None:
    """Everything filed under a provisional organization id moves to the organization's
    real one (known.py: only an organization created during a rolling upgrade differs)."""
    for model in (Repository, Issue, PullRequest):
        await session.execute(
            sa.update(model).where(model.organization_id == old).values(organization_id=new)
        )
    await session.execute(sa.delete(KnownOrganization).where(KnownOrganization.id == old))


# --- repositories ----------------------------------------------------------------------------


async def get_repository(session: AsyncSession, id: uuid.UUID) -> Repository | None:
    return await session.scalar(
        sa.select(Repository).where(Repository.id == id, Repository.deleted_at.is_(None))
    )


async def lookup_repository(
    session: AsyncSession, platform: Platform, organization_name: str, name: str
) -> Repository | None:
    return await session.scalar(
        sa.select(Repository)
        .join(KnownOrganization, KnownOrganization.id == Repository.organization_id)
        .where(
            KnownOrganization.platform == platform,
            KnownOrganization.name == organization_name,
            KnownOrganization.deleted_at.is_(None),
            Repository.name == name,
            Repository.deleted_at.is_(None),
        )
    )


async def list_repositories(
    session: AsyncSession,
    organization_ids: Collection[uuid.UUID],
    *,
    after: tuple[str, uuid.UUID] | None,
    limit: int,
) -> Sequence[Repository]:
    """Ordered by (name, id): names repeat across organizations, the id breaks ties."""
    query = sa.select(Repository).where(
        Repository.organization_id.in_(organization_ids), Repository.deleted_at.is_(None)
    )
    if after is not None:
        query = query.where(sa.tuple_(Repository.name, Repository.id) > sa.tuple_(*after))
    query = query.order_by(Repository.name, Repository.id).limit(limit)
    return (await session.scalars(query)).all()


async def repositories_by_external_id(
    session: AsyncSession, external_ids: Collection[int]
) -> dict[int, Repository]:
    """Every row with these external ids, soft-deleted ones included (an upsert revives)."""
    rows = await session.scalars(
        sa.select(Repository).where(Repository.external_id.in_(external_ids))
    )
    return {r.external_id: r for r in rows}


async def live_names_taken(
    session: AsyncSession, keys: Collection[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], int]:
    """(organization_id, name) -> external_id of the live repositories holding these names."""
    if not keys:
        return {}
    rows = await session.execute(
        sa.select(Repository.organization_id, Repository.name, Repository.external_id).where(
            sa.tuple_(Repository.organization_id, Repository.name).in_(list(keys)),
            Repository.deleted_at.is_(None),
        )
    )
    return {(org, name): ext for org, name, ext in rows}


async def upsert_repositories(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> list[Upserted[Repository]]:
    """Insert or update by external_id (reviving a soft-deleted row)."""
    return await upsert_many(
        session,
        Repository,
        [{**row, "deleted_at": None} for row in rows],
        conflict=["external_id"],
    )


async def move_repository_content(
    session: AsyncSession, repository_id: uuid.UUID, organization_id: uuid.UUID
) -> None:
    """A transferred repository takes its issues and pull requests along (its rewards follow
    in the reward service, from repository_updated)."""
    for model in (Issue, PullRequest):
        await session.execute(
            sa.update(model)
            .where(model.repository_id == repository_id)
            .values(organization_id=organization_id)
        )


async def soft_delete_repository(session: AsyncSession, repo: Repository, now: datetime) -> None:
    """Marks the repository and its issues and pull requests deleted (they go with it)."""
    for model in (Issue, PullRequest):
        await session.execute(
            sa.update(model)
            .where(model.repository_id == repo.id, model.deleted_at.is_(None))
            .values(deleted_at=now)
        )
    repo.deleted_at = now
    await session.flush()


# --- issues and pull requests ----------------------------------------------------------------


async def get_issue(session: AsyncSession, id: uuid.UUID) -> Issue | None:
    return await session.scalar(sa.select(Issue).where(Issue.id == id, Issue.deleted_at.is_(None)))


async def get_pull_request(session: AsyncSession, id: uuid.UUID) -> PullRequest | None:
    return await session.scalar(
        sa.select(PullRequest).where(PullRequest.id == id, PullRequest.deleted_at.is_(None))
    )


async def list_issues(
    session: AsyncSession,
    repository_id: uuid.UUID,
    *,
    state: IssueState | None,
    before: int | None,
    limit: int,
    github_objects: bool = False,
) -> list[listing.Message]:
    """Newest first: ordered by number descending; `before` is the last number seen.
    Proto-shaped Issue fields (see listing); [] for an unknown or deleted repository."""
    return await listing.page(
        session,
        "issues",
        repository_id,
        state=state,
        before=before,
        limit=limit,
        github_objects=github_objects,
    )


async def list_pull_requests(
    session: AsyncSession,
    repository_id: uuid.UUID,
    *,
    state: IssueState | None,
    before: int | None,
    limit: int,
    github_objects: bool = False,
) -> list[listing.Message]:
    return await listing.page(
        session,
        "pull_requests",
        repository_id,
        state=state,
        before=before,
        limit=limit,
        github_objects=github_objects,
    )
