"""The tables the repository service owns, in schema `repository` (decision 0021)."""

from polar_db.models.base import REPOSITORY as SCHEMA
from polar_db.models.repository.issues import Issue, PullRequest
from polar_db.models.repository.known import KnownOrganization
from polar_db.models.repository.repositories import Repository
from polar_db.models.repository.sync_jobs import SyncJob, SyncStatus

__all__ = [
    "SCHEMA",
    "Issue",
    "KnownOrganization",
    "PullRequest",
    "Repository",
    "SyncJob",
    "SyncStatus",
]
