"""The rules of the reward domain. Takes a session and plain values; never commits (the
runtime's unit of work does, one per RPC or consumed message). What it needs to know of
issues, organizations and users it asks their services (`Directory`)."""

from __future__ import annotations

import uuid

from polar_db.models import RewardState
from polar_db.models.reward import Reward
from polar_kit import paging
from polar_kit.errors import InvalidArgument
from polar_kit.paging import Page
from sqlalchemy.ext.asyncio import AsyncSession

from . import events
from . import repository as repo
from .directory import Directory
from .exceptions import (
    IssueNotFound,
    OrganizationSuspended,
    RepositoryNotFound,
    RewardNotFound,
    UserNotFound,
)

MAX_REWARD_MINOR_UNITS = 100_000_000
REWARD_CURRENCIES = frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "CHF"})


async def get_reward(session: AsyncSession, id: uuid.UUID) -> Reward:
    found = await repo.get_reward(session, id)
    if found is None:
        raise RewardNotFound(id)
    return found


async def list_rewards(
    session: AsyncSession,
    directory: Directory,
    repository_id: uuid.UUID,
    *,
    page_size: int,
    page_token: str,
) -> Page[Reward]:
    before = paging.decode_token(page_token, paging.timestamp, paging.uuid_)
    rows = await repo.list_rewards(session, repository_id, before=before, limit=page_size + 1)
    # An empty page of an unknown repository is NOT_FOUND, as the repository service said.
    if not rows and before is None and not await directory.repository_exists(repository_id):
        raise RepositoryNotFound(repository_id)
    return paging.page(rows, page_size, lambda r: (r.created_at, r.id))


async def create_reward(
    session: AsyncSession,
    directory: Directory,
    issue_id: uuid.UUID,
    *,
    amount: int,
    currency: str,
    backer_user_id: uuid.UUID | None,
    email: str | None,
    request_id: uuid.UUID | None = None,
) -> Reward:
    """`amount` in the currency's minor units. Refused for an organization whose GitHub
    installation is suspended (decision 0006).

    With a `request_id` (AIP-155), a retry returns the reward the first call created, even
    if a concurrent call with the same id is still committing it (the unique constraint on
    rewards.request_id decides who created it)."""
    request = (issue_id, amount, currency, backer_user_id, email)
    if request_id is not None:
        first = await repo.get_reward_by_request_id(session, request_id)
        if first is not None:
            return _same_request(first, request, request_id)
    if not 0 < amount <= MAX_REWARD_MINOR_UNITS:
        raise InvalidArgument(
            f"amount.minor_units must be between 1 and {MAX_REWARD_MINOR_UNITS} "
            f"(1,000,000.00), got {amount}",
            field="reward.amount.minor_units",
        )
    if currency not in REWARD_CURRENCIES:
        raise InvalidArgument(
            f"amount.currency must be one of {', '.join(sorted(REWARD_CURRENCIES))}, "
            f"got {currency[:16]!r}",
            field="reward.amount.currency",
        )
    issue = await directory.issue(issue_id)
    if issue is None:
        raise IssueNotFound(issue_id)
    if await directory.organization_suspended(issue.organization_id):
        raise OrganizationSuspended(issue.organization_id)
    if backer_user_id is not None and not await directory.user_exists(backer_user_id):
        raise UserNotFound(backer_user_id)
    reward = await repo.add_reward(
        session,
        Reward(
            id=uuid.uuid4(),
            issue_id=issue.id,
            repository_id=issue.repository_id,
            organization_id=issue.organization_id,
            amount=amount,
            currency=currency,
            state=RewardState.created,
            backer_user_id=backer_user_id,
            email=email,
            request_id=request_id,
        ),
    )
    if reward is None:  # the same request_id was committed meanwhile
        assert request_id is not None
        first = await repo.get_reward_by_request_id(session, request_id)
        assert first is not None
        return _same_request(first, request, request_id)
    await events.reward_created(session, reward)
    return reward


def _same_request(first: Reward, request: tuple[object, ...], request_id: uuid.UUID) -> Reward:
    """A retry must repeat its request: reusing an id for another reward is a caller's bug."""
    if (first.issue_id, first.amount, first.currency, first.backer_user_id, first.email) != request:
        raise InvalidArgument(
            f"request_id {request_id} was already used for another reward: "
            "a retry must send the same request, a new reward needs a new request_id",
            field="request_id",
        )
    return first


# --- what the repository service's events change -------------------------------------------


async def issue_deleted(session: AsyncSession, issue_id: uuid.UUID) -> int:
    """An issue deleted (alone, or with its repository or organization): its open rewards
    are cancelled. Idempotent."""
    return await repo.cancel_open(session, Reward.issue_id == issue_id)


async def issue_moved(
    session: AsyncSession,
    issue_id: uuid.UUID,
    repository_id: uuid.UUID,
    organization_id: uuid.UUID,
) -> int:
    """An issue's repository or organization changed (a transfer): its rewards follow."""
    return await repo.move(
        session,
        Reward.issue_id == issue_id,
        repository_id=repository_id,
        organization_id=organization_id,
    )


async def repository_moved(
    session: AsyncSession, repository_id: uuid.UUID, organization_id: uuid.UUID
) -> int:
    """A repository moved to another organization: its rewards follow."""
    return await repo.move(
        session, Reward.repository_id == repository_id, organization_id=organization_id
    )
