"""Every Polar table. Import models from here: `from polar_db.models import Organization`."""

from polar_db.models.base import (
    NAMING_CONVENTION,
    Base,
    IssueState,
    OrganizationStatus,
    Platform,
    RewardState,
)
from polar_db.models.issue import Issue, PullRequest
from polar_db.models.messaging import OutboxEvent, ProcessedMessage
from polar_db.models.organization import Organization
from polar_db.models.repository import Repository
from polar_db.models.reward import Reward
from polar_db.models.sync_job import SyncJob, SyncStatus
from polar_db.models.user import OAuthAccount, User, UserOrganization

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Issue",
    "IssueState",
    "OAuthAccount",
    "Organization",
    "OrganizationStatus",
    "OutboxEvent",
    "Platform",
    "ProcessedMessage",
    "PullRequest",
    "Repository",
    "Reward",
    "RewardState",
    "SyncJob",
    "SyncStatus",
    "User",
    "UserOrganization",
]
