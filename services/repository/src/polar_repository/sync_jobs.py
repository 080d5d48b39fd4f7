"""The queries of sync jobs (table sync_jobs: one row per repository, its current or last
sync), and nothing else. See sync.py for what runs them and decision 0013 for why a table.

A job is due when `run_at <= now()`: queued, interrupted while running (its replica died or
stopped: the row still says running), or failed with a retry time. `run_at` is null when
there is nothing to do (completed, or failed for good).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from polar_db.models import OrganizationStatus
from polar_db.models.repository import (
    KnownOrganization,
    PullRequest,
    Repository,
    SyncJob,
    SyncStatus,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "polar_sync_jobs"  # NOTIFY on commit of a new job: runners wake up at once
PENDING = (SyncStatus.queued, SyncStatus.running)


def _fresh(trigger: str, since: datetime | None) -> dict[str, Any]:
    """The columns of a new job (last_success_started_at is kept from the previous one)."""
    return {
        "job_id": uuid.uuid4(),
        "status": SyncStatus.queued,
        "trigger": trigger,
        "run_at": sa.func.now(),
        "since": since,
        "phase": "pulls",
        "next_page": 1,
        "page_size": 0,
        "listed": 0,
        "pages": 0,
        "pages_expected": 0,
        "issues": 0,
        "pull_requests": 0,
        "expected": 0,
        "skipped_count": 0,
        "skipped": [],
        "attempts": 0,
        "failure_reason": None,
        "failure_message": None,
        "started_at": None,
        "finished_at": None,
        "modified_at": sa.func.now(),
    }


async def request(
    session: AsyncSession, repository_id: uuid.UUID, *, trigger: str, since: datetime | None = None
) -> bool:
    """Queues a sync of the repository in the caller's transaction; False when one is queued
    or running already (it goes on). A failed job waiting for its retry is replaced."""
    values = _fresh(trigger, since)
    stmt = (
        pg_insert(SyncJob)
        .values(repository_id=repository_id, **values)
        .on_conflict_do_update(
            index_elements=[SyncJob.repository_id],
            set_=values,
            where=SyncJob.status.not_in(PENDING),
        )
        .returning(SyncJob.job_id)
    )
    queued = (await session.execute(stmt)).scalar_one_or_none() is not None
    if queued:
        await session.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))
    return queued


async def due(
    session: AsyncSession, *, limit: int, exclude: Collection[uuid.UUID]
) -> list[uuid.UUID]:
    """Repositories whose job is due, longest waiting first."""
    query = sa.select(SyncJob.repository_id).where(SyncJob.run_at <= sa.func.now())
    if exclude:
        query = query.where(SyncJob.repository_id.not_in(list(exclude)))
    query = query.order_by(SyncJob.run_at).limit(limit)
    return list(await session.scalars(query))


async def get(
    session: AsyncSession, repository_id: uuid.UUID, *, due: bool = False
) -> SyncJob | None:
    """The repository's job (with `due`: only if it is due now)."""
    query = sa.select(SyncJob).where(SyncJob.repository_id == repository_id)
    if due:
        query = query.where(SyncJob.run_at <= sa.func.now())
    return await session.scalar(query.execution_options(populate_existing=True))


async def update(
    session: AsyncSession, repository_id: uuid.UUID, job_id: uuid.UUID, **values: Any
) -> SyncJob | None:
    """Sets columns of this job (never of a newer one of the same repository)."""
    return await session.scalar(
        sa.update(SyncJob)
        .where(SyncJob.repository_id == repository_id, SyncJob.job_id == job_id)
        .values(**values, modified_at=sa.func.now())
        .returning(SyncJob),
        execution_options={"populate_existing": True},
    )


async def target(
    session: AsyncSession, repository_id: uuid.UUID
) -> tuple[Repository, KnownOrganization] | None:
    """The repository (deleted or not) and its organization."""
    row = (
        await session.execute(
            sa.select(Repository, KnownOrganization)
            .join(KnownOrganization, KnownOrganization.id == Repository.organization_id)
            .where(Repository.id == repository_id)
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def update_pull_request_comments(
    session: AsyncSession, repository_id: uuid.UUID, counts: Sequence[Mapping[str, Any]]
) -> list[PullRequest]:
    """`comments` of pull requests from the issues listing (the pulls listing lacks it):
    `counts` holds number, comments and updated_at (GitHub's, the guard against overwriting
    a newer webhook's value). Returns the pull requests changed."""
    if not counts:
        return []
    values = sa.values(
        sa.column("number", sa.Integer),
        sa.column("comments", sa.Integer),
        sa.column("updated_at", sa.TIMESTAMP(timezone=True)),
        name="v",
    ).data([(c["number"], c["comments"], c["updated_at"]) for c in counts])
    result = await session.scalars(
        sa.update(PullRequest)
        .where(
            PullRequest.repository_id == repository_id,
            PullRequest.number == values.c.number,
            PullRequest.deleted_at.is_(None),
            PullRequest.comments.is_distinct_from(values.c.comments),
            sa.or_(
                PullRequest.issue_modified_at.is_(None),
                PullRequest.issue_modified_at <= values.c.updated_at,
            ),
        )
        .values(comments=values.c.comments, modified_at=sa.func.now())
        .returning(PullRequest),
        execution_options={"synchronize_session": False, "populate_existing": True},
    )
    return list(result)


async def pull_requests_without_details(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> set[int]:
    """External ids of the pull request rows (from the pulls listing) whose full object is
    worth a request: not stored yet, stored older than the row, or never stored with the
    details only the full object has (`commits` is one)."""
    if not rows:
        return set()
    ids = [r["external_id"] for r in rows]
    stored = dict(
        (
            await session.execute(
                sa.select(PullRequest.external_id, PullRequest.issue_modified_at).where(
                    PullRequest.external_id.in_(ids), PullRequest.commits.is_not(None)
                )
            )
        ).all()
    )
    return {
        r["external_id"]
        for r in rows
        if r["external_id"] not in stored
        or (stored[r["external_id"]] or r["issue_modified_at"]) < r["issue_modified_at"]
    }


async def schedule(session: AsyncSession, *, interval: int, margin: int) -> int:
    """Queues the periodic sync of every live repository whose slot has come: each
    repository has a fixed slot within every `interval` seconds (a hash of its id), so
    syncs spread evenly over the interval whatever their history. Incremental (since the
    start of the last successful sync, less `margin` seconds) when there was one, else
    full. Returns how many it queued; safe to run in several replicas at once."""
    result = await session.execute(
        sa.text(
            """
            WITH slots AS (
                SELECT r.id,
                       to_timestamp(
                           floor((extract(epoch FROM now())
                                  - mod(abs(hashtextextended(r.id::text, 0)), :interval))
                                 / :interval) * :interval
                           + mod(abs(hashtextextended(r.id::text, 0)), :interval)
                       ) AS slot
                FROM repositories r
                JOIN known_organizations o ON o.id = r.organization_id
                WHERE r.deleted_at IS NULL AND o.deleted_at IS NULL
                  AND o.installation_id IS NOT NULL AND o.status <> :suspended
            )
            INSERT INTO sync_jobs (
                repository_id, job_id, status, trigger, run_at, since, phase, next_page,
                page_size, listed, pages, pages_expected, issues, pull_requests, expected,
                skipped_count, skipped, attempts)
            SELECT s.id, gen_random_uuid(), 'queued', 'schedule', now(),
                   j.last_success_started_at - make_interval(secs => :margin),
                   'pulls', 1, 0, 0, 0, 0, 0, 0, 0, 0, '[]'::jsonb, 0
            FROM slots s LEFT JOIN sync_jobs j ON j.repository_id = s.id
            WHERE j.repository_id IS NULL
               OR (j.run_at IS NULL AND coalesce(j.finished_at, j.created_at) < s.slot)
            ON CONFLICT (repository_id) DO UPDATE SET
                job_id = excluded.job_id, status = 'queued', trigger = 'schedule',
                run_at = now(), since = excluded.since, phase = 'pulls', next_page = 1,
                page_size = 0, listed = 0, pages = 0, pages_expected = 0, issues = 0,
                pull_requests = 0, expected = 0, skipped_count = 0, skipped = '[]'::jsonb,
                attempts = 0, failure_reason = NULL, failure_message = NULL,
                started_at = NULL, finished_at = NULL, modified_at = now()
            WHERE sync_jobs.run_at IS NULL
            RETURNING repository_id
            """
        ),
        {"interval": interval, "margin": margin, "suspended": OrganizationStatus.suspended.value},
    )
    queued = len(result.all())
    if queued:
        await session.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))
    return queued
