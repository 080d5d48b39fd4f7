"""The domain events this service publishes, written to the outbox in the caller's transaction.

Payloads are the protobuf messages of polar/repository/v1/events.proto, published on the
subjects their protos declare (polar.catalog, generated). One recorder per event, plus batched
recorders for bulk writes (batch upserts, webhook batches, the sync): those insert every outbox
row in one multi-row INSERT (polar_kit.outbox.record_events).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from polar import catalog
from polar.repository.v1 import events_pb2
from polar_db.models import Issue, PullRequest, Repository
from polar_db.upsert import Upserted
from polar_kit import outbox
from polar_kit.outbox import record_event
from sqlalchemy.ext.asyncio import AsyncSession

from . import mappers

SOURCE = "/polar/repository"
REPOSITORY_CREATED = catalog.REPOSITORY_CREATED.subject
REPOSITORY_UPDATED = catalog.REPOSITORY_UPDATED.subject
REPOSITORY_DELETED = catalog.REPOSITORY_DELETED.subject
ISSUE_CREATED = catalog.ISSUE_CREATED.subject
ISSUE_UPDATED = catalog.ISSUE_UPDATED.subject
ISSUE_DELETED = catalog.ISSUE_DELETED.subject
PULL_REQUEST_CREATED = catalog.PULL_REQUEST_CREATED.subject
PULL_REQUEST_UPDATED = catalog.PULL_REQUEST_UPDATED.subject
PULL_REQUEST_DELETED = catalog.PULL_REQUEST_DELETED.subject
SYNC_PROGRESS = catalog.REPOSITORY_SYNC_PROGRESS.subject
SYNC_COMPLETED = catalog.REPOSITORY_SYNC_COMPLETED.subject
SYNC_FAILED = catalog.REPOSITORY_SYNC_FAILED.subject

Event = tuple[str, Message]  # (subject, payload)
# The headers of the message each row was written for, by GitHub id (a webhook batch's):
# its event carries that message's correlation and trace (polar_kit.outbox.record_events).
Origins = Mapping[int, Mapping[str, str]]
# What a deletion event says of an issue or pull request: (id, repository_id, organization_id).
Deleted = tuple[uuid.UUID, uuid.UUID, uuid.UUID]


def _origin(origins: Origins | None, external_id: int) -> Mapping[str, str] | None:
    return origins.get(external_id) if origins else None


async def record_events(
    session: AsyncSession,
    events: Iterable[Event | tuple[str, Message, Mapping[str, str] | None]],
) -> list[uuid.UUID]:
    """Add many events to the outbox in one statement; returns their ids in publish order."""
    return await outbox.record_events(session, events, source=SOURCE)


# --- repositories ----------------------------------------------------------------------------


def repository_event(repo: Repository, *, created: bool) -> Event:
    if created:
        return REPOSITORY_CREATED, events_pb2.RepositoryCreated(repository=mappers.repository(repo))
    return REPOSITORY_UPDATED, events_pb2.RepositoryUpdated(repository=mappers.repository(repo))


def repository_deleted_event(repo: Repository) -> Event:
    message = events_pb2.RepositoryDeleted(
        repository_id=str(repo.id),
        organization_id=str(repo.organization_id),
        external_id=repo.external_id,
    )
    return REPOSITORY_DELETED, message


async def repository_created(session: AsyncSession, repo: Repository) -> None:
    await record_event(session, *repository_event(repo, created=True), source=SOURCE)


async def repository_updated(session: AsyncSession, repo: Repository) -> None:
    await record_event(session, *repository_event(repo, created=False), source=SOURCE)


async def repository_deleted(session: AsyncSession, repo: Repository) -> None:
    await record_event(session, *repository_deleted_event(repo), source=SOURCE)


async def repositories_upserted(
    session: AsyncSession, upserted: Sequence[Upserted[Repository]]
) -> None:
    """repository_created / repository_updated for each row of an upsert_many result."""
    await record_events(session, (repository_event(u.row, created=u.created) for u in upserted))


async def repositories_deleted(session: AsyncSession, repos: Sequence[Repository]) -> None:
    await record_events(session, map(repository_deleted_event, repos))


# --- issues ----------------------------------------------------------------------------------


def issue_event(issue: Issue, *, created: bool) -> Event:
    if created:
        return ISSUE_CREATED, events_pb2.IssueCreated(issue=mappers.issue(issue))
    return ISSUE_UPDATED, events_pb2.IssueUpdated(issue=mappers.issue(issue))


def issue_deleted_event(issue: Issue | Deleted) -> Event:
    if isinstance(issue, Issue):
        issue = (issue.id, issue.repository_id, issue.organization_id)
    issue_id, repository_id, organization_id = issue
    message = events_pb2.IssueDeleted(
        issue_id=str(issue_id),
        repository_id=str(repository_id),
        organization_id=str(organization_id),
    )
    return ISSUE_DELETED, message


async def issue_created(session: AsyncSession, issue: Issue) -> None:
    await record_event(session, *issue_event(issue, created=True), source=SOURCE)


async def issue_updated(session: AsyncSession, issue: Issue) -> None:
    await record_event(session, *issue_event(issue, created=False), source=SOURCE)


async def issue_deleted(session: AsyncSession, issue: Issue) -> None:
    await record_event(session, *issue_deleted_event(issue), source=SOURCE)


async def issues_upserted(
    session: AsyncSession, upserted: Sequence[Upserted[Issue]], origins: Origins | None = None
) -> None:
    await record_events(
        session,
        (
            (*issue_event(u.row, created=u.created), _origin(origins, u.row.external_id))
            for u in upserted
        ),
    )


async def issues_deleted(
    session: AsyncSession, issues: Iterable[Issue | Deleted], origins: Origins | None = None
) -> None:
    await record_events(
        session,
        (
            (
                *issue_deleted_event(i),
                _origin(origins, i.external_id) if isinstance(i, Issue) else None,
            )
            for i in issues
        ),
    )


# --- pull requests ---------------------------------------------------------------------------


def pull_request_event(pr: PullRequest, *, created: bool) -> Event:
    if created:
        message = events_pb2.PullRequestCreated(pull_request=mappers.pull_request(pr))
        return PULL_REQUEST_CREATED, message
    return PULL_REQUEST_UPDATED, events_pb2.PullRequestUpdated(
        pull_request=mappers.pull_request(pr)
    )


async def pull_request_created(session: AsyncSession, pr: PullRequest) -> None:
    await record_event(session, *pull_request_event(pr, created=True), source=SOURCE)


async def pull_request_updated(session: AsyncSession, pr: PullRequest) -> None:
    await record_event(session, *pull_request_event(pr, created=False), source=SOURCE)


def pull_request_deleted_event(deleted: Deleted) -> Event:
    pr_id, repository_id, organization_id = deleted
    message = events_pb2.PullRequestDeleted(
        pull_request_id=str(pr_id),
        repository_id=str(repository_id),
        organization_id=str(organization_id),
    )
    return PULL_REQUEST_DELETED, message


async def pull_requests_deleted(session: AsyncSession, deleted: Iterable[Deleted]) -> None:
    await record_events(session, map(pull_request_deleted_event, deleted))


async def pull_requests_upserted(
    session: AsyncSession, upserted: Sequence[Upserted[PullRequest]], origins: Origins | None = None
) -> None:
    await record_events(
        session,
        (
            (*pull_request_event(u.row, created=u.created), _origin(origins, u.row.external_id))
            for u in upserted
        ),
    )


# --- sync ------------------------------------------------------------------------------------


async def sync_progress(
    session: AsyncSession,
    *,
    repository_id: uuid.UUID,
    organization_id: uuid.UUID,
    job_id: uuid.UUID,
    synced: int,
    expected: int,
    page: int,
    pages: int,
    issue: tuple[str, str] | None = None,
) -> None:
    issue_id, issue_title = issue or ("", "")
    message = events_pb2.RepositorySyncProgress(
        repository_id=str(repository_id),
        organization_id=str(organization_id),
        synced=synced,
        expected=expected,
        issue_id=issue_id,
        issue_title=issue_title,
        job_id=str(job_id),
        page=page,
        pages=pages,
    )
    await record_event(session, SYNC_PROGRESS, message, source=SOURCE)


async def sync_completed(
    session: AsyncSession,
    *,
    repository_id: uuid.UUID,
    organization_id: uuid.UUID,
    job_id: uuid.UUID,
    issues: int,
    pull_requests: int,
    skipped: int,
    skipped_items: Sequence[Mapping[str, Any]],
) -> None:
    message = events_pb2.RepositorySyncCompleted(
        repository_id=str(repository_id),
        organization_id=str(organization_id),
        issues=issues,
        pull_requests=pull_requests,
        job_id=str(job_id),
        skipped=skipped,
        skipped_items=[mappers.skipped_item(i) for i in skipped_items],
    )
    await record_event(session, SYNC_COMPLETED, message, source=SOURCE)


async def sync_failed(
    session: AsyncSession,
    *,
    repository_id: uuid.UUID,
    organization_id: uuid.UUID,
    job_id: uuid.UUID,
    reason: str,
    message: str,
    retry_at: datetime | None,
    issues: int,
    pull_requests: int,
) -> None:
    failed = events_pb2.RepositorySyncFailed(
        repository_id=str(repository_id),
        organization_id=str(organization_id),
        job_id=str(job_id),
        reason=mappers.failure_reason(reason),
        message=message[:1000],
        issues=issues,
        pull_requests=pull_requests,
    )
    if retry_at is not None:
        failed.retry_at.FromDatetime(retry_at)
    await record_event(session, SYNC_FAILED, failed, source=SOURCE)


# --- rewards ---------------------------------------------------------------------------------
