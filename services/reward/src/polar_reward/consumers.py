"""NATS subscribers: the repository service's events about the issues rewards are on.

Rewards keep their issue's repository and organization ids, and are cancelled when the issue
goes: the repository service says so in its events (decision 0027), the reward service never
reads its tables. Each handler is idempotent (the effect is the same state, whatever the
repeats), and commits with the message's "processed" mark.
"""

from __future__ import annotations

import uuid

import structlog
from google.protobuf.message import DecodeError
from polar import catalog
from polar.repository.v1 import events_pb2
from polar_kit.consumer import Delivery, Reject
from sqlalchemy.ext.asyncio import AsyncSession

from . import service

log = structlog.get_logger()

SUBJECTS = [
    catalog.ISSUE_DELETED.subject,
    catalog.ISSUE_UPDATED.subject,
    catalog.REPOSITORY_UPDATED.subject,
]


async def on_repository_event(session: AsyncSession, msg: Delivery) -> None:
    try:
        if msg.subject == catalog.ISSUE_DELETED.subject:
            deleted = events_pb2.IssueDeleted.FromString(msg.data)
            await service.issue_deleted(session, uuid.UUID(deleted.issue_id))
        elif msg.subject == catalog.ISSUE_UPDATED.subject:
            issue = events_pb2.IssueUpdated.FromString(msg.data).issue
            await service.issue_moved(
                session,
                uuid.UUID(issue.id),
                uuid.UUID(issue.repository_id),
                uuid.UUID(issue.organization_id),
            )
        elif msg.subject == catalog.REPOSITORY_UPDATED.subject:
            repository = events_pb2.RepositoryUpdated.FromString(msg.data).repository
            await service.repository_moved(
                session, uuid.UUID(repository.id), uuid.UUID(repository.organization_id)
            )
        else:
            log.info("event ignored", subject=msg.subject)
    except (DecodeError, ValueError) as e:
        raise Reject(f"malformed {msg.subject}: {e!r}") from e
