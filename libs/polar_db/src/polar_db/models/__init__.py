"""Every Polar table, organized by owner (decision 0021).

A service imports its own tables from its owner's package (`polar_db.models.repository`),
the shared types from here, and the outbox tables from `polar_db.models.messaging`;
tests/test_ownership.py fails on a service importing another owner's table. Everything is
also re-exported here for migrations, tests and tools.
"""

from sqlalchemy import MetaData

from polar_db.models.base import (
    NAMING_CONVENTION,
    ORGANIZATION,
    OWNERS,
    REPOSITORY,
    REWARD,
    Base,
    IssueState,
    OrganizationStatus,
    Platform,
    RewardState,
    role_of,
)
from polar_db.models.messaging import OutboxEvent, ProcessedMessage
from polar_db.models.organization import OAuthAccount, Organization, User, UserOrganization
from polar_db.models.repository import (
    Issue,
    KnownOrganization,
    PullRequest,
    Repository,
    SyncJob,
    SyncStatus,
)
from polar_db.models.reward import Reward


def metadata_of(owner: str) -> MetaData:
    """The tables of `owner` as they exist in its schema: its own tables, plus its copies of
    the tables every service keeps (outbox, processed marks: no schema in the models, each
    service's `search_path` finds its own)."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for table in Base.metadata.tables.values():
        if table.schema == owner:
            table.to_metadata(metadata)
        elif table.schema is None:
            table.to_metadata(metadata, schema=owner)
    return metadata


__all__ = [
    "NAMING_CONVENTION",
    "ORGANIZATION",
    "OWNERS",
    "REPOSITORY",
    "REWARD",
    "Base",
    "Issue",
    "IssueState",
    "KnownOrganization",
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
    "metadata_of",
    "role_of",
]
