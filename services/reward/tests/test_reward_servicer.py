"""Every RPC through a real in-process gRPC server and channel, against real PostgreSQL and
the real repository and organization services (the rewards tests of the repository service,
moved here with the rewards: decision 0027)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
import sqlalchemy as sa
from polar.common.v1.common_pb2 import Money
from polar.reward.v1 import events_pb2, reward_pb2
from polar.reward.v1 import reward_service_pb2 as pb
from polar_db.models import OrganizationStatus, OutboxEvent
from polar_db.models.repository import Issue
from polar_db.models.reward import Reward
from polar_kit.grpc.status import details_of
from polar_reward.testing import MakeIssues, MakeOrg, MakeRepo, MakeUser, Sessionmaker, soft_delete

if TYPE_CHECKING:
    from polar.reward.v1.reward_service_pb2_grpc import RewardServiceAsyncStub

Stub: TypeAlias = "RewardServiceAsyncStub"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def expect_code(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def outbox(reward_sessionmaker: Sessionmaker, key: str) -> list[tuple[str, bytes]]:
    """(subject, payload) of the outbox events whose payload mentions `key`, oldest first."""
    async with reward_sessionmaker() as session:
        rows = await session.execute(
            sa.select(OutboxEvent.subject, OutboxEvent.payload).order_by(OutboxEvent.seq)
        )
        return [(subject, payload) for subject, payload in rows if key.encode() in payload]


def create(
    issue_id: object = "",
    amount: Money | None = None,
    *,
    request_id: str = "",
    **fields: Any,
) -> pb.CreateRewardRequest:
    reward = reward_pb2.Reward(issue_id=str(issue_id), amount=amount, **fields)
    return pb.CreateRewardRequest(reward=reward, request_id=request_id)


USD = Money(currency="USD", minor_units=100)


async def test_create_reward(
    reward_stub: Stub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    make_user: MakeUser,
    reward_sessionmaker: Sessionmaker,
) -> None:
    repo = await make_repo()
    (issue,) = await make_issues(repo, 1)
    user = await make_user()
    response = await reward_stub.CreateReward(
        create(issue.id, Money(currency="EUR", minor_units=2500), backer_user_id=str(user.id))
    )
    reward = response.reward
    assert (reward.issue_id, reward.repository_id, reward.organization_id) == (
        str(issue.id),
        str(repo.id),
        str(repo.organization_id),
    )
    assert (reward.amount.currency, reward.amount.minor_units, reward.state) == (
        "EUR",
        2500,
        "created",
    )
    assert reward.backer_user_id == str(user.id)
    events = await outbox(reward_sessionmaker, reward.id)
    assert [s for s, _ in events] == ["polar.reward.v1.reward_created"]
    assert events_pb2.RewardCreated.FromString(events[0][1]).reward == reward
    got = await reward_stub.GetReward(pb.GetRewardRequest(id=reward.id))
    assert got.reward == reward

    by_email = await reward_stub.CreateReward(
        create(issue.id, Money(currency="USD", minor_units=1), email="backer@example.com")
    )
    assert (by_email.reward.email, by_email.reward.backer_user_id) == ("backer@example.com", "")


async def test_required_fields_are_the_contracts(reward_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reward_stub.CreateReward(create(email="x@example.com"))
    assert caught.value.code() == INVALID
    assert details_of(caught.value).field_violations == [
        ("reward.issue_id", "reward.issue_id is required"),
        ("reward.amount", "reward.amount is required"),
    ]
    details = await expect_code(
        reward_stub.CreateReward(create(UNKNOWN_ID, USD, state="paid")), INVALID
    )
    assert "reward.state is output only" in details


async def test_create_reward_retried_with_its_request_id_creates_one_reward(
    reward_stub: Stub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    reward_sessionmaker: Sessionmaker,
) -> None:
    """AIP-155: retries (one after the other, and concurrent ones) return the first reward."""
    (issue,) = await make_issues(await make_repo(), 1)
    request = create(
        issue.id,
        Money(currency="USD", minor_units=700),
        email="retry@example.com",
        request_id=str(uuid.uuid4()),
    )
    first = (await reward_stub.CreateReward(request)).reward
    again = (await reward_stub.CreateReward(request)).reward
    racing = await asyncio.gather(*(reward_stub.CreateReward(request) for _ in range(5)))
    assert {again.id, *(r.reward.id for r in racing)} == {first.id}
    assert again == first
    async with reward_sessionmaker() as session:
        rewards = await session.scalar(
            sa.select(sa.func.count()).select_from(Reward).where(Reward.issue_id == issue.id)
        )
    assert rewards == 1
    assert [s for s, _ in await outbox(reward_sessionmaker, first.id)] == [
        "polar.reward.v1.reward_created"
    ]

    # Concurrent first calls: exactly one creates it, the others return it.
    request.request_id = str(uuid.uuid4())
    racing = await asyncio.gather(*(reward_stub.CreateReward(request) for _ in range(5)))
    assert len({r.reward.id for r in racing}) == 1
    assert len(await outbox(reward_sessionmaker, racing[0].reward.id)) == 1

    # Without a request_id, each call is a new reward.
    request.request_id = ""
    two = [(await reward_stub.CreateReward(request)).reward.id for _ in range(2)]
    assert len(set(two)) == 2


async def test_create_reward_request_id_reused_for_another_reward_is_invalid(
    reward_stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues
) -> None:
    (issue,) = await make_issues(await make_repo(), 1)
    request = create(
        issue.id,
        Money(currency="USD", minor_units=700),
        email="retry@example.com",
        request_id=str(uuid.uuid4()),
    )
    await reward_stub.CreateReward(request)
    request.reward.amount.minor_units = 800
    assert "request_id" in await expect_code(reward_stub.CreateReward(request), INVALID)
    request.request_id = "not-a-uuid"
    await expect_code(reward_stub.CreateReward(request), INVALID)


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        (None, "amount is required"),
        (Money(currency="USD", minor_units=0), "minor_units must be between 1 and"),
        (Money(currency="USD", minor_units=-100), "minor_units must be between 1 and"),
        (Money(currency="USD", minor_units=100_000_001), "minor_units must be between 1 and"),
        (Money(currency="USD", minor_units=2**63 - 1), "minor_units must be between 1 and"),
        (Money(currency="", minor_units=100), "currency"),
        (Money(currency="usd", minor_units=100), "currency"),
        (Money(currency="US", minor_units=100), "currency"),
        (Money(currency="USDT", minor_units=100), "currency"),
        (Money(currency="XYZ", minor_units=100), "currency"),
        (Money(currency="U$D", minor_units=100), "currency"),
        (Money(minor_units=100), "currency"),
    ],
)
async def test_create_reward_rejects_bad_money(
    reward_stub: Stub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    amount: Money | None,
    fragment: str,
) -> None:
    (issue,) = await make_issues(await make_repo(), 1)
    assert fragment in await expect_code(
        reward_stub.CreateReward(create(issue.id, amount)), INVALID
    )


@pytest.mark.parametrize(("minor_units", "currency"), [(100_000_000, "USD"), (1, "EUR")])
async def test_rewards_within_the_bounds_are_created(
    reward_stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues, minor_units: int, currency: str
) -> None:
    [issue] = await make_issues(await make_repo())
    created = await reward_stub.CreateReward(
        create(issue.id, Money(currency=currency, minor_units=minor_units))
    )
    assert created.reward.amount.minor_units == minor_units


async def test_create_reward_validates(
    reward_stub: Stub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    admin_sessionmaker: Sessionmaker,
) -> None:
    repo = await make_repo()
    issue, deleted = await make_issues(repo, 2)
    await soft_delete(admin_sessionmaker, Issue, deleted.id)

    await expect_code(reward_stub.CreateReward(create("bad", USD)), INVALID)
    await expect_code(
        reward_stub.CreateReward(create(issue.id, USD, backer_user_id="bad")), INVALID
    )
    await expect_code(
        reward_stub.CreateReward(create(issue.id, USD, email="not an email")), INVALID
    )
    await expect_code(reward_stub.CreateReward(create(issue.id, USD, email="a@b@c")), INVALID)
    assert "issue" in await expect_code(
        reward_stub.CreateReward(create(UNKNOWN_ID, USD)), NOT_FOUND
    )
    await expect_code(reward_stub.CreateReward(create(deleted.id, USD)), NOT_FOUND)
    assert "user" in await expect_code(
        reward_stub.CreateReward(create(issue.id, USD, backer_user_id=UNKNOWN_ID)), NOT_FOUND
    )
    # No reward was recorded by any of them.
    listed = await reward_stub.ListRewards(pb.ListRewardsRequest(repository_id=str(repo.id)))
    assert list(listed.rewards) == []


async def test_members_of_a_suspended_organization_cannot_create_rewards(
    reward_stub: Stub, make_org: MakeOrg, make_repo: MakeRepo, make_issues: MakeIssues
) -> None:
    org = await make_org(status=OrganizationStatus.suspended)
    [issue] = await make_issues(await make_repo(org))
    details = await expect_code(
        reward_stub.CreateReward(create(issue.id, USD)), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "suspended" in details
    # Reading stays possible.
    listed = await reward_stub.ListRewards(
        pb.ListRewardsRequest(repository_id=str(issue.repository_id))
    )
    assert list(listed.rewards) == []


async def test_list_rewards_pages_newest_first(
    reward_stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues
) -> None:
    repo = await make_repo()
    issues = await make_issues(repo, 3)
    created = []
    for i in range(7):
        made = await reward_stub.CreateReward(
            create(issues[i % 3].id, Money(currency="USD", minor_units=100 * (i + 1)))
        )
        created.append(made.reward.id)
    (other_issue,) = await make_issues(await make_repo(), 1)
    await reward_stub.CreateReward(create(other_issue.id, Money(currency="USD", minor_units=1)))
    seen: list[str] = []
    token = ""
    while True:
        response = await reward_stub.ListRewards(
            pb.ListRewardsRequest(repository_id=str(repo.id), page_size=3, page_token=token)
        )
        seen += [r.id for r in response.rewards]
        token = response.next_page_token
        if not token:
            break
    assert seen == created[::-1]


@pytest.mark.parametrize(
    "token", ["garbage!", "WyIyMDI0LTAxLTAxIiwgIngiXQ", "W10", "WyJub3QgYSB0aW1lIiwiYSJd"]
)
async def test_crafted_reward_page_tokens_are_invalid_argument(
    reward_stub: Stub, make_repo: MakeRepo, token: str
) -> None:
    repo = await make_repo()
    request = pb.ListRewardsRequest(repository_id=str(repo.id), page_token=token)
    await expect_code(reward_stub.ListRewards(request), INVALID)


async def test_unknown_ids(reward_stub: Stub) -> None:
    await expect_code(reward_stub.GetReward(pb.GetRewardRequest(id=UNKNOWN_ID)), NOT_FOUND)
    await expect_code(reward_stub.GetReward(pb.GetRewardRequest(id="42")), INVALID)
    await expect_code(
        reward_stub.ListRewards(pb.ListRewardsRequest(repository_id=UNKNOWN_ID)), NOT_FOUND
    )
    await expect_code(
        reward_stub.ListRewards(pb.ListRewardsRequest(repository_id=UNKNOWN_ID, page_size=-1)),
        INVALID,
    )
