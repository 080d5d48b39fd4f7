"""The GitHub sync state of a repository, for the members of its organization.

A small module of its own: the repository service's GetRepositorySyncState, as JSON.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from google.protobuf.timestamp_pb2 import Timestamp
from polar.repository.v1 import repository_pb2, sync_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb
from pydantic import BaseModel, Field

from ..auth import CurrentSession, GatewayDep
from ._common import API_PREFIX, AUTHED, json_response

router = APIRouter(prefix=API_PREFIX, tags=["repositories"])

SyncStatus = Literal["idle", "queued", "running", "failed"]
FailureReason = Literal[
    "rate_limited", "access_revoked", "repository_gone", "github_unavailable", "internal"
]
_STATUS: dict[int, SyncStatus] = {
    sync_pb2.RepositorySyncState.STATUS_IDLE: "idle",
    sync_pb2.RepositorySyncState.STATUS_QUEUED: "queued",
    sync_pb2.RepositorySyncState.STATUS_RUNNING: "running",
    sync_pb2.RepositorySyncState.STATUS_FAILED: "failed",
}
_REASON: dict[int, FailureReason] = {
    sync_pb2.SYNC_FAILURE_REASON_RATE_LIMITED: "rate_limited",
    sync_pb2.SYNC_FAILURE_REASON_ACCESS_REVOKED: "access_revoked",
    sync_pb2.SYNC_FAILURE_REASON_REPOSITORY_GONE: "repository_gone",
    sync_pb2.SYNC_FAILURE_REASON_GITHUB_UNAVAILABLE: "github_unavailable",
    sync_pb2.SYNC_FAILURE_REASON_INTERNAL: "internal",
}


class SkippedItem(BaseModel):
    kind: Literal["issue", "pull_request"]
    external_id: int | None = Field(description="GitHub's id, when the item had one.")
    number: int | None
    reason: str


class RepositorySyncRead(BaseModel):
    repository_id: uuid.UUID
    status: SyncStatus
    job_id: uuid.UUID | None = Field(description="The current or last sync, as in its events.")
    page: int = Field(description="Pages stored so far.")
    pages: int = Field(description="Of an estimate (0: not known yet).")
    synced: int
    expected: int = Field(description="An estimate that never decreases during a sync.")
    failure_reason: FailureReason | None
    failure_message: str | None
    next_run_at: datetime | None = Field(description="Queued for, or the next retry.")
    last_success_at: datetime | None
    attempts: int
    skipped: int
    skipped_items: list[SkippedItem]


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def repository_sync(state: sync_pb2.RepositorySyncState) -> RepositorySyncRead:
    return RepositorySyncRead(
        repository_id=uuid.UUID(state.repository_id),
        status=_STATUS.get(state.status, "idle"),
        job_id=uuid.UUID(state.job_id) if state.job_id else None,
        page=state.page,
        pages=state.pages,
        synced=state.synced,
        expected=state.expected,
        failure_reason=_REASON.get(state.failure_reason),
        failure_message=state.failure_message or None,
        next_run_at=_time(state.next_run_at, state.HasField("next_run_at")),
        last_success_at=_time(state.last_success_at, state.HasField("last_success_at")),
        attempts=state.attempts,
        skipped=state.skipped,
        skipped_items=[
            SkippedItem(
                kind="pull_request" if s.kind == "pull_request" else "issue",
                external_id=s.external_id or None,
                number=s.number or None,
                reason=s.reason,
            )
            for s in state.skipped_items
        ],
    )


@router.get("/repositories/{id}/sync", response_model=RepositorySyncRead, responses=AUTHED)
async def get_repository_sync(
    id: uuid.UUID, session: CurrentSession, gateway: GatewayDep
) -> Response:
    """Where the repository's GitHub sync stands: idle, queued, running (page n of m),
    failed (why, and when it is retried)."""

    async def get() -> repository_pb2.Repository:
        request = repo_pb.GetRepositoryRequest(id=str(id))
        return (await gateway.clients.call(gateway.clients.repo.GetRepository, request)).repository

    # Not the caller's organization: the same 404 as a missing repository.
    await gateway.memberships.visible_repository(session.user_id, get())
    reply = await gateway.clients.call(
        gateway.clients.repo.GetRepositorySyncState,
        repo_pb.GetRepositorySyncStateRequest(repository_id=str(id)),
    )
    return json_response(repository_sync(reply.state))
