"""The repository service's events keep rewards current: a deleted issue's open rewards are
cancelled, a moved issue or repository takes its rewards along (handlers called with
deliveries as the consumer would hand them; the consumer runtime is polar_kit's)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from google.protobuf.message import Message
from polar import catalog
from polar.common.v1.common_pb2 import Money
from polar.repository.v1 import events_pb2, repository_pb2
from polar.reward.v1 import reward_pb2
from polar.reward.v1 import reward_service_pb2 as pb
from polar_db.models import RewardState
from polar_db.models.reward import Reward
from polar_kit.consumer import Delivery, Reject
from polar_reward.consumers import on_repository_event
from polar_reward.testing import MakeIssues, MakeRepo, Sessionmaker

if TYPE_CHECKING:
    from polar.reward.v1.reward_service_pb2_grpc import RewardServiceAsyncStub


def delivery(subject: str, message: Message | bytes) -> Delivery:
    data = message if isinstance(message, bytes) else message.SerializeToString()
    return Delivery(subject, data, {}, str(uuid.uuid4()), 1, 1)


async def handle(reward_sessionmaker: Sessionmaker, d: Delivery) -> None:
    async with reward_sessionmaker.begin() as session:
        await on_repository_event(session, d)


async def reward_on(stub: RewardServiceAsyncStub, issue_id: uuid.UUID) -> str:
    request = pb.CreateRewardRequest(
        reward=reward_pb2.Reward(
            issue_id=str(issue_id), amount=Money(currency="USD", minor_units=300)
        )
    )
    return (await stub.CreateReward(request)).reward.id


async def stored(reward_sessionmaker: Sessionmaker, id: str) -> Reward:
    async with reward_sessionmaker() as session:
        found: Reward | None = await session.get(Reward, uuid.UUID(id))
        assert found is not None
        return found


async def test_an_issue_deleted_cancels_its_open_rewards_only(
    reward_stub: RewardServiceAsyncStub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    reward_sessionmaker: Sessionmaker,
) -> None:
    repo = await make_repo()
    gone, kept = await make_issues(repo, 2)
    open_one, paid, other = (
        await reward_on(reward_stub, gone.id),
        await reward_on(reward_stub, gone.id),
        await reward_on(reward_stub, kept.id),
    )
    async with reward_sessionmaker.begin() as session:
        row = await session.get(Reward, uuid.UUID(paid))
        assert row is not None
        row.state = RewardState.paid
    event = events_pb2.IssueDeleted(
        issue_id=str(gone.id), repository_id=str(repo.id), organization_id=str(repo.organization_id)
    )
    for _ in range(2):  # a redelivery changes nothing
        await handle(reward_sessionmaker, delivery(catalog.ISSUE_DELETED.subject, event))
    assert (await stored(reward_sessionmaker, open_one)).state == RewardState.cancelled
    assert (await stored(reward_sessionmaker, paid)).state == RewardState.paid
    assert (await stored(reward_sessionmaker, other)).state == RewardState.created


async def test_moved_issues_and_repositories_take_their_rewards_along(
    reward_stub: RewardServiceAsyncStub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    reward_sessionmaker: Sessionmaker,
) -> None:
    repo, target = await make_repo(), await make_repo()
    [issue] = await make_issues(repo)
    reward = await reward_on(reward_stub, issue.id)
    moved = repository_pb2.Issue(
        id=str(issue.id), repository_id=str(target.id), organization_id=str(target.organization_id)
    )
    await handle(
        reward_sessionmaker,
        delivery(catalog.ISSUE_UPDATED.subject, events_pb2.IssueUpdated(issue=moved)),
    )
    row = await stored(reward_sessionmaker, reward)
    assert (row.repository_id, row.organization_id) == (target.id, target.organization_id)

    new_org = (await make_repo()).organization_id
    transferred = repository_pb2.Repository(id=str(target.id), organization_id=str(new_org))
    await handle(
        reward_sessionmaker,
        delivery(
            catalog.REPOSITORY_UPDATED.subject,
            events_pb2.RepositoryUpdated(repository=transferred),
        ),
    )
    row = await stored(reward_sessionmaker, reward)
    assert (row.repository_id, row.organization_id) == (target.id, new_org)


async def test_a_malformed_event_is_rejected(reward_sessionmaker: Sessionmaker) -> None:
    with pytest.raises(Reject):
        await handle(reward_sessionmaker, delivery(catalog.ISSUE_DELETED.subject, b"\xff\xff"))
    bad = events_pb2.IssueDeleted(issue_id="not-a-uuid")
    with pytest.raises(Reject):
        await handle(reward_sessionmaker, delivery(catalog.ISSUE_DELETED.subject, bad))
