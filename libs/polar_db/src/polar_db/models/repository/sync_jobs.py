"""GitHub sync jobs of the repository service: one row per repository, its current or last
sync (see polar_repository.sync). The row is the job's durable state: written before a sync
request is acknowledged, advanced in the same transaction as each synced page."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import REPOSITORY, Base, TimestampMixin, in_schema, str_enum


class SyncStatus(enum.StrEnum):
    queued = "queued"  # due at run_at
    running = "running"  # claimed by a replica (holding the repository's advisory lock)
    completed = "completed"
    failed = "failed"  # run_at set: retried then; null: for good


class SyncJob(TimestampMixin, Base):
    __tablename__ = "sync_jobs"
    __table_args__ = in_schema(
        REPOSITORY,
        # The runners' poll: due jobs, oldest first.
        Index("ix_sync_jobs_due_run_at", "run_at", postgresql_where=sa.text("run_at IS NOT NULL")),
    )

    repository_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repository.repositories.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[uuid.UUID]  # a new one per requested sync: the sync's log context
    status: Mapped[SyncStatus] = mapped_column(str_enum(SyncStatus))
    trigger: Mapped[str]  # created, request, schedule
    run_at: Mapped[datetime | None]  # when it is due (queued, resumed or retried)
    since: Mapped[datetime | None]  # incremental: what changed since then; null: full
    # Where it resumes: the listing (pulls, then issues) and its next page.
    phase: Mapped[str] = mapped_column(default="pulls")
    next_page: Mapped[int] = mapped_column(default=1)
    page_size: Mapped[int] = mapped_column(default=0)  # learned from a full page
    listed: Mapped[int] = mapped_column(default=0)  # items seen in the current listing
    pages: Mapped[int] = mapped_column(default=0)  # pages stored so far
    pages_expected: Mapped[int] = mapped_column(default=0)  # estimate; never decreases
    issues: Mapped[int] = mapped_column(default=0)
    pull_requests: Mapped[int] = mapped_column(default=0)
    expected: Mapped[int] = mapped_column(default=0)  # never decreases within a job
    skipped_count: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[list[Any]] = mapped_column(default=list)  # [{kind, id, number, reason}]
    attempts: Mapped[int] = mapped_column(default=0)  # failed attempts of this job
    failure_reason: Mapped[str | None]
    failure_message: Mapped[str | None]
    started_at: Mapped[datetime | None]  # of this job's first attempt
    finished_at: Mapped[datetime | None]
    last_success_started_at: Mapped[datetime | None]  # `since` of the next incremental sync
