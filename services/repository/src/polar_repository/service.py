"""All business rules of the repository domain.

Functions take a session and plain values (never protobuf or gRPC types) and never commit:
the caller owns the unit of work (one per RPC, one per consumed message).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from polar_db.models import (
    Issue,
    IssueState,
    OrganizationStatus,
    Platform,
    PullRequest,
    Repository,
    SyncJob,
)
from polar_db.upsert import Upserted
from polar_kit import paging
from polar_kit.errors import AlreadyExists
from polar_kit.paging import Page
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from . import events, sync_jobs
from . import repository as repo
from .exceptions import (
    IssueNotFound,
    OrganizationsNotFound,
    OrganizationSuspended,
    PullRequestNotFound,
    RepositoryNotFound,
)
from .listing import Message

LIVE_NAME_INDEX = "ix_repositories_live_organization_id_name"

# Rewards: at most 1,000,000.00 in the currency's minor units, in a currency we can pay out.
# Only currencies with two decimals, so the bound means the same amount of units everywhere.


class SyncStarter(Protocol):
    """Queues a GitHub sync of a repository in the caller's transaction (sync.SyncRunner).

    Returns False when a sync of that repository is already queued or running. The
    repository is known to exist when this is called.
    """

    async def start(self, session: AsyncSession, repository_id: uuid.UUID) -> bool: ...


# --- repositories ----------------------------------------------------------------------------


async def get_repository(session: AsyncSession, id: uuid.UUID) -> Repository:
    found = await repo.get_repository(session, id)
    if found is None:
        raise RepositoryNotFound(id)
    return found


async def lookup_repository(
    session: AsyncSession, platform: Platform, organization_name: str, name: str
) -> Repository:
    found = await repo.lookup_repository(session, platform, organization_name, name)
    if found is None:
        raise RepositoryNotFound(f"{organization_name}/{name}")
    return found


async def list_repositories(
    session: AsyncSession,
    organization_ids: Sequence[uuid.UUID],
    *,
    page_size: int,
    page_token: str,
) -> Page[Repository]:
    after = paging.decode_token(page_token, paging.text, paging.uuid_)
    rows = await repo.list_repositories(
        session, set(organization_ids), after=after, limit=page_size + 1
    )
    return paging.page(rows, page_size, lambda r: (r.name, r.id))


async def batch_upsert_repositories(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> list[Upserted[Repository]]:
    """Create or update repositories by external id; the result is in the order of `rows`.

    `rows` hold Repository column values (organization_id, external_id, name...), each
    external id and each (organization_id, name) at most once. Every organization must
    exist. Records repository_created / repository_updated (only when something changed)
    in the same transaction.
    """
    if not rows:
        return []
    org_ids = {row["organization_id"] for row in rows}
    if missing := org_ids - await repo.live_organization_ids(session, org_ids):
        raise OrganizationsNotFound(missing)

    external_ids = [row["external_id"] for row in rows]
    held = await repo.repositories_by_external_id(session, external_ids)
    before = {ext: (r.organization_id, r.modified_at, r.deleted_at) for ext, r in held.items()}
    # A live repository elsewhere in the batch frees its name by being renamed in the same
    # statement; only a name held outside the batch is a conflict the caller must resolve.
    in_batch = set(external_ids)
    taken = await repo.live_names_taken(
        session, {(row["organization_id"], row["name"]) for row in rows}
    )
    for row in rows:
        holder = taken.get((row["organization_id"], row["name"]))
        if holder is not None and holder != row["external_id"] and holder not in in_batch:
            raise AlreadyExists(
                f"repository name {row['name']!r} is held by the repository with external id "
                f"{holder} in organization {row['organization_id']}; rename or delete it first"
            )

    values = [{"id": uuid.uuid4(), "platform": Platform.github, **row} for row in rows]
    try:
        written = await repo.upsert_repositories(session, values)
    except IntegrityError as e:
        # A concurrent write took one of the names since the check above.
        if LIVE_NAME_INDEX not in str(e.orig):
            raise
        raise AlreadyExists(
            "a repository name in this batch was just taken by another repository; retry"
        ) from None
    upserted = {u.row.external_id: u for u in written}
    ordered = [upserted[ext] for ext in external_ids]

    changed: list[Upserted[Repository]] = []
    for u in ordered:
        previous = before.get(u.row.external_id)
        if previous is not None and previous[0] != u.row.organization_id:
            await repo.move_repository_content(session, u.row.id, u.row.organization_id)
        revived = previous is not None and previous[2] is not None
        if u.created or revived:
            changed.append(Upserted(u.row, True))
        elif previous is None or previous[1] != u.row.modified_at:
            changed.append(u)
    await events.repositories_upserted(session, changed)
    return ordered


async def delete_repository(session: AsyncSession, repository: Repository) -> None:
    """Soft-delete the repository with its issues and pull requests; records
    repository_deleted. The row stays as a tombstone (rewards keep pointing at it)."""
    await repo.soft_delete_repository(session, repository, datetime.now(UTC))
    await events.repository_deleted(session, repository)


async def sync_repository(
    session: AsyncSession, sync: SyncStarter, repository_id: uuid.UUID
) -> bool:
    repository = await get_repository(session, repository_id)
    # GitHub refuses a suspended installation's token anyway: say so now, plainly.
    await _require_active(session, repository.organization_id)
    return await sync.start(session, repository.id)


async def get_sync_state(session: AsyncSession, repository_id: uuid.UUID) -> SyncJob | None:
    """The repository's current or last sync job; None if it was never synced."""
    repository = await get_repository(session, repository_id)
    return await sync_jobs.get(session, repository.id)


async def _require_active(session: AsyncSession, organization_id: uuid.UUID) -> None:
    if await repo.organization_status(session, organization_id) == OrganizationStatus.suspended:
        raise OrganizationSuspended(organization_id)


# --- issues and pull requests ----------------------------------------------------------------


async def get_issue(session: AsyncSession, id: uuid.UUID) -> Issue:
    found = await repo.get_issue(session, id)
    if found is None:
        raise IssueNotFound(id)
    return found


async def get_pull_request(session: AsyncSession, id: uuid.UUID) -> PullRequest:
    found = await repo.get_pull_request(session, id)
    if found is None:
        raise PullRequestNotFound(id)
    return found


def _number_token(token: str) -> int | None:
    # Issue and pull request numbers are PostgreSQL integers: a larger one is no token of ours.
    before = paging.decode_token(token, paging.positive_int32)
    return before[0] if before else None


async def list_issues(
    session: AsyncSession,
    repository_id: uuid.UUID,
    *,
    state: IssueState | None,
    page_size: int,
    page_token: str,
    github_objects: bool = False,
) -> Page[Message]:
    """Proto-shaped Issue fields (see listing), for mappers.listed_issue."""
    before = _number_token(page_token)
    rows = await repo.list_issues(
        session,
        repository_id,
        state=state,
        before=before,
        limit=page_size + 1,
        github_objects=github_objects,
    )
    return await _number_page(session, repository_id, rows, page_size)


async def list_pull_requests(
    session: AsyncSession,
    repository_id: uuid.UUID,
    *,
    state: IssueState | None,
    page_size: int,
    page_token: str,
    github_objects: bool = False,
) -> Page[Message]:
    """Proto-shaped PullRequest fields (see listing), for mappers.listed_pull_request."""
    before = _number_token(page_token)
    rows = await repo.list_pull_requests(
        session,
        repository_id,
        state=state,
        before=before,
        limit=page_size + 1,
        github_objects=github_objects,
    )
    return await _number_page(session, repository_id, rows, page_size)


async def _number_page(
    session: AsyncSession, repository_id: uuid.UUID, rows: list[Message], page_size: int
) -> Page[Message]:
    if not rows:
        # Nothing listed: an empty page of a live repository, or NOT_FOUND.
        await get_repository(session, repository_id)
    return paging.page(rows, page_size, lambda m: (m["number"],))
