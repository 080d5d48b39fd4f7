"""Every RPC through a real in-process gRPC server and channel, against real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
import sqlalchemy as sa
from polar.common.v1.common_pb2 import PLATFORM_GITHUB
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as pb

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub
from polar_db.models import OutboxEvent
from polar_db.models.organization import User
from polar_organization import superuser
from polar_organization.settings import OrganizationSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Stub: TypeAlias = "OrganizationServiceAsyncStub"


async def expect_code(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def outbox_subjects(sessionmaker: async_sessionmaker[AsyncSession], key: str) -> list[str]:
    """Subjects of the outbox events whose payload mentions `key` (an id), oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(OutboxEvent.subject, OutboxEvent.payload).order_by(OutboxEvent.seq)
        )
        return [subject for subject, payload in rows if key.encode() in payload]


# --- users ---------------------------------------------------------------------------------


async def test_upsert_user_creates_then_updates(
    stub: Stub, make_user: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await make_user(github_user_id=4242001, login="alice-gh", avatar_url="a.png")
    assert first.created
    assert first.user.username == "alice-gh"
    again = await stub.UpsertUserFromGitHub(
        pb.UpsertUserFromGitHubRequest(
            github_user_id=4242001,
            login="alice-renamed",
            email="alice@example.com",
            email_verified=True,
            access_token="gho_new",
        )
    )
    assert not again.created
    assert again.user.id == first.user.id
    assert again.user.username == "alice-renamed"
    got = await stub.GetUser(pb.GetUserRequest(id=first.user.id))
    assert got.user.email == "alice@example.com"
    assert await outbox_subjects(sessionmaker, first.user.id) == [
        "polar.organization.v1.user_created",
        "polar.organization.v1.user_updated",
    ]


async def test_upsert_user_links_verified_email(stub: Stub, make_user: Any) -> None:
    first = await make_user(email="same@example.com")
    other_account = await make_user(email="same@example.com")
    assert not other_account.created
    assert other_account.user.id == first.user.id


async def test_upsert_user_rejects_taken_username(stub: Stub, make_user: Any) -> None:
    await make_user(login="taken-name")
    await expect_code(
        stub.UpsertUserFromGitHub(
            pb.UpsertUserFromGitHubRequest(
                github_user_id=99887766, login="taken-name", access_token="t"
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"github_user_id": 0, "login": "x", "access_token": "t"},
        {"github_user_id": -5, "login": "x", "access_token": "t"},
        {"github_user_id": 5, "login": "  ", "access_token": "t"},
        {"github_user_id": 5, "login": "x" * 40, "access_token": "t"},
        {"github_user_id": 5, "login": "x", "access_token": ""},
        {"github_user_id": 5, "login": "x", "access_token": "t", "access_token_expires_at": -1},
    ],
)
async def test_upsert_user_bad_input(stub: Stub, fields: dict[str, Any]) -> None:
    await expect_code(
        stub.UpsertUserFromGitHub(pb.UpsertUserFromGitHubRequest(**fields)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_get_user_errors(stub: Stub) -> None:
    await expect_code(stub.GetUser(pb.GetUserRequest(id="nope")), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_code(stub.GetUser(pb.GetUserRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_code(
        stub.GetUser(pb.GetUserRequest(id=str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND
    )


# --- organizations -------------------------------------------------------------------------


async def test_get_and_lookup_organization(stub: Stub, make_org: Any) -> None:
    org_id = await make_org(account_login="lookup-me", account_id=777001, id=777002)
    got = (await stub.GetOrganization(pb.GetOrganizationRequest(id=str(org_id)))).organization
    assert (got.name, got.external_id, got.installation_id) == ("lookup-me", 777001, 777002)
    assert got.status == organization_pb2.ORGANIZATION_STATUS_ACTIVE
    assert got.platform == PLATFORM_GITHUB

    by_name = pb.LookupOrganizationRequest(
        name=pb.LookupOrganizationRequest.ByName(platform=PLATFORM_GITHUB, name="lookup-me")
    )
    by_ext = pb.LookupOrganizationRequest(
        external_id=pb.LookupOrganizationRequest.ByExternalId(
            platform=PLATFORM_GITHUB, external_id=777001
        )
    )
    by_inst = pb.LookupOrganizationRequest(installation_id=777002)
    for request in (by_name, by_ext, by_inst):
        assert (await stub.LookupOrganization(request)).organization.id == str(org_id)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.LookupOrganizationRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.LookupOrganizationRequest(name=pb.LookupOrganizationRequest.ByName(name="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.LookupOrganizationRequest(
                name=pb.LookupOrganizationRequest.ByName(platform=PLATFORM_GITHUB, name=" ")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.LookupOrganizationRequest(
                external_id=pb.LookupOrganizationRequest.ByExternalId(
                    platform=PLATFORM_GITHUB, external_id=-1
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.LookupOrganizationRequest(installation_id=0), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.LookupOrganizationRequest(
                name=pb.LookupOrganizationRequest.ByName(platform=PLATFORM_GITHUB, name="no-such")
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (pb.LookupOrganizationRequest(installation_id=123456789123), grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_lookup_errors(
    stub: Stub, request_: pb.LookupOrganizationRequest, code: grpc.StatusCode
) -> None:
    await expect_code(stub.LookupOrganization(request_), code)


async def test_get_organization_errors(stub: Stub) -> None:
    await expect_code(
        stub.GetOrganization(pb.GetOrganizationRequest(id="12")), grpc.StatusCode.INVALID_ARGUMENT
    )
    await expect_code(
        stub.GetOrganization(pb.GetOrganizationRequest(id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_list_organizations_pages_through_a_members_orgs(
    stub: Stub, make_org: Any, make_user: Any
) -> None:
    user = (await make_user()).user
    org_ids = {str(await make_org()) for _ in range(5)}
    for org_id in org_ids:
        await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=user.id))
    await make_org()  # not a member: must not be listed

    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListOrganizations(
            pb.ListOrganizationsRequest(member_user_id=user.id, page_size=2, page_token=token)
        )
        assert len(page.organizations) <= 2
        seen += [o.id for o in page.organizations]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(org_ids)

    # An oversized page is coerced to the maximum (AIP-158), not refused.
    for _ in range(101 - len(org_ids)):
        await make_org()
    unfiltered = await stub.ListOrganizations(pb.ListOrganizationsRequest(page_size=1000))
    assert len(unfiltered.organizations) == 100
    assert unfiltered.next_page_token


@pytest.mark.parametrize(
    "request_",
    [
        pb.ListOrganizationsRequest(page_size=-1),
        pb.ListOrganizationsRequest(member_user_id="not-a-uuid"),
        pb.ListOrganizationsRequest(page_token="%%%"),
        pb.ListOrganizationsRequest(page_token="WyJhIl0"),  # a token of the wrong shape
    ],
)
async def test_list_organizations_bad_input(stub: Stub, request_: Any) -> None:
    await expect_code(stub.ListOrganizations(request_), grpc.StatusCode.INVALID_ARGUMENT)


async def test_suspend_unsuspend_delete(
    stub: Stub, make_org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org_id = str(await make_org())
    suspended = await stub.SuspendOrganization(
        pb.SuspendOrganizationRequest(id=org_id, suspended_by="octocat")
    )
    assert suspended.organization.status == organization_pb2.ORGANIZATION_STATUS_SUSPENDED
    assert suspended.organization.installation_suspended_by == "octocat"
    assert suspended.organization.HasField("installation_suspended_at")
    # Suspending twice is a no-op, not an error.
    await stub.SuspendOrganization(pb.SuspendOrganizationRequest(id=org_id))

    active = await stub.UnsuspendOrganization(pb.UnsuspendOrganizationRequest(id=org_id))
    assert active.organization.status == organization_pb2.ORGANIZATION_STATUS_ACTIVE
    assert not active.organization.HasField("installation_suspended_at")

    await stub.DeleteOrganization(pb.DeleteOrganizationRequest(id=org_id))
    await expect_code(
        stub.GetOrganization(pb.GetOrganizationRequest(id=org_id)), grpc.StatusCode.NOT_FOUND
    )
    await expect_code(
        stub.DeleteOrganization(pb.DeleteOrganizationRequest(id=org_id)), grpc.StatusCode.NOT_FOUND
    )
    assert await outbox_subjects(sessionmaker, org_id) == [
        "polar.organization.v1.created",
        "polar.organization.v1.suspended",
        "polar.organization.v1.unsuspended",
        "polar.organization.v1.deleted",
    ]


@pytest.mark.parametrize(
    "method", ["SuspendOrganization", "UnsuspendOrganization", "DeleteOrganization"]
)
async def test_lifecycle_bad_input(stub: Stub, method: str) -> None:
    request_type = getattr(pb, f"{method}Request")
    call = getattr(stub, method)
    await expect_code(call(request_type(id="x")), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_code(call(request_type(id=str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND)


# --- memberships ---------------------------------------------------------------------------


async def test_membership_lifecycle(stub: Stub, make_org: Any, make_user: Any) -> None:
    org_id = str(await make_org())
    alice, bob = (await make_user()).user, (await make_user()).user

    def check(user_id: str) -> Any:
        return stub.CheckMembership(
            pb.CheckMembershipRequest(organization_id=org_id, user_id=user_id)
        )

    assert not (await check(alice.id)).is_member
    added = await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=alice.id))
    assert added.member.username == alice.username
    await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=bob.id))
    assert (await check(alice.id)).is_member
    await expect_code(
        stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=alice.id)),
        grpc.StatusCode.ALREADY_EXISTS,
    )

    first = await stub.ListMembers(pb.ListMembersRequest(organization_id=org_id, page_size=1))
    second = await stub.ListMembers(
        pb.ListMembersRequest(organization_id=org_id, page_size=1, page_token=first.next_page_token)
    )
    assert {m.user_id for m in [*first.members, *second.members]} == {alice.id, bob.id}
    assert second.next_page_token == ""

    await stub.RemoveMember(pb.RemoveMemberRequest(organization_id=org_id, user_id=alice.id))
    assert not (await check(alice.id)).is_member
    await expect_code(
        stub.RemoveMember(pb.RemoveMemberRequest(organization_id=org_id, user_id=alice.id)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_delete_user(
    stub: Stub, make_org: Any, make_user: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The user, their GitHub link and memberships go (member_removed each); signing in
    again with the same GitHub account makes a new user."""
    org_id = str(await make_org())
    made = await make_user(github_user_id=4242999, login="leaving-gh")
    user = made.user
    await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=user.id))
    await stub.DeleteUser(pb.DeleteUserRequest(id=user.id))
    await expect_code(stub.GetUser(pb.GetUserRequest(id=user.id)), grpc.StatusCode.NOT_FOUND)
    await expect_code(stub.DeleteUser(pb.DeleteUserRequest(id=user.id)), grpc.StatusCode.NOT_FOUND)
    assert (await outbox_subjects(sessionmaker, user.id))[-1] == (
        "polar.organization.v1.member_removed"
    )
    again = await make_user(github_user_id=4242999, login="leaving-gh")
    assert again.created
    assert again.user.id != user.id


async def test_superuser_command(
    stub: Stub, make_user: Any, settings: OrganizationSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    user = (await make_user()).user
    assert not user.is_superuser
    assert await superuser.run(user.username, True, settings) == 0
    assert (await stub.GetUser(pb.GetUserRequest(id=user.id))).user.is_superuser
    assert await superuser.run(user.id, False, settings) == 0
    assert not (await stub.GetUser(pb.GetUserRequest(id=user.id))).user.is_superuser
    assert await superuser.run(str(uuid.uuid4()), True, settings) == 1
    assert "not found" in capsys.readouterr().out


async def test_membership_errors(stub: Stub, make_org: Any, make_user: Any) -> None:
    org_id, user_id = str(await make_org()), (await make_user()).user.id
    unknown = str(uuid.uuid4())
    not_found = grpc.StatusCode.NOT_FOUND
    bad = grpc.StatusCode.INVALID_ARGUMENT
    await expect_code(
        stub.AddMember(pb.AddMemberRequest(organization_id=unknown, user_id=user_id)), not_found
    )
    await expect_code(
        stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=unknown)), not_found
    )
    await expect_code(stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id="u")), bad)
    await expect_code(
        stub.CheckMembership(pb.CheckMembershipRequest(organization_id=unknown, user_id=user_id)),
        not_found,
    )
    await expect_code(stub.CheckMembership(pb.CheckMembershipRequest(organization_id=org_id)), bad)
    await expect_code(stub.ListMembers(pb.ListMembersRequest(organization_id=unknown)), not_found)
    await expect_code(
        stub.ListMembers(pb.ListMembersRequest(organization_id=org_id, page_size=-3)), bad
    )
    await expect_code(
        stub.ListMembers(pb.ListMembersRequest(organization_id=org_id, page_token="bad token")), bad
    )
    await expect_code(
        stub.RemoveMember(pb.RemoveMemberRequest(organization_id=unknown, user_id=user_id)),
        not_found,
    )


# --- install -------------------------------------------------------------------------------


async def test_install_organization_asks_github(stub: Stub, make_user: Any) -> None:
    # The fake GitHub answers GET /user/installations with the recorded fixture:
    # installations 1 and 3 of the organization account "octocat" (id 1).
    user = (await make_user()).user
    installed = await stub.InstallOrganization(
        pb.InstallOrganizationRequest(user_id=user.id, platform=PLATFORM_GITHUB, installation_id=1)
    )
    org = installed.organization
    assert (org.name, org.external_id, org.installation_id) == ("octocat", 1, 1)
    assert not org.is_personal
    assert org.status == organization_pb2.ORGANIZATION_STATUS_ACTIVE
    member = await stub.CheckMembership(
        pb.CheckMembershipRequest(organization_id=org.id, user_id=user.id)
    )
    assert member.is_member

    # A second user installing the same installation joins the same organization.
    other = (await make_user()).user
    again = await stub.InstallOrganization(
        pb.InstallOrganizationRequest(user_id=other.id, platform=PLATFORM_GITHUB, installation_id=1)
    )
    assert again.organization.id == org.id


async def test_install_rejects_an_installation_the_user_cannot_see(
    stub: Stub, make_user: Any
) -> None:
    user = (await make_user()).user
    await expect_code(
        stub.InstallOrganization(
            pb.InstallOrganizationRequest(
                user_id=user.id, platform=PLATFORM_GITHUB, installation_id=2
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_install_errors(stub: Stub, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        no_github = User(username=f"no-github-{uuid.uuid4().hex[:8]}")
        session.add(no_github)
    await expect_code(
        stub.InstallOrganization(
            pb.InstallOrganizationRequest(
                user_id=str(no_github.id), platform=PLATFORM_GITHUB, installation_id=1
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await expect_code(
        stub.InstallOrganization(
            pb.InstallOrganizationRequest(
                user_id=str(uuid.uuid4()), platform=PLATFORM_GITHUB, installation_id=1
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    for request in (
        pb.InstallOrganizationRequest(user_id="x", platform=PLATFORM_GITHUB, installation_id=1),
        pb.InstallOrganizationRequest(user_id=str(no_github.id), installation_id=1),
        pb.InstallOrganizationRequest(user_id=str(no_github.id), platform=PLATFORM_GITHUB),
    ):
        await expect_code(stub.InstallOrganization(request), grpc.StatusCode.INVALID_ARGUMENT)


# --- every RPC, empty request --------------------------------------------------------------

# ListOrganizations is the one RPC whose empty request is valid (all organizations).
METHODS = [
    m.name
    for m in pb.DESCRIPTOR.services_by_name["OrganizationService"].methods
    if m.name != "ListOrganizations"
]


@pytest.mark.parametrize("method", METHODS)
async def test_empty_request_is_a_clear_client_error(stub: Stub, method: str) -> None:
    request = getattr(pb, f"{method}Request")()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(stub, method)(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
    assert info.value.details()
