"""Issue 10 on the organization service: crafted page tokens, soft-deleted users,
concurrent sign-ins, GitHub tokens at rest."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from polar.common.v1.common_pb2 import PLATFORM_GITHUB
from polar.organization.v1 import organization_service_pb2 as pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar_db.models.organization import OAuthAccount, User
from polar_kit.grpc import RunningServer, auth
from polar_kit.paging import encode_token
from polar_kit.secrets import InsecureSecretError
from polar_organization.settings import OrganizationSettings
from polar_organization.tokens import DEV_TOKEN_KEY, TokenCipher, reencrypt_all
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub

Stub: TypeAlias = "OrganizationServiceAsyncStub"
INVALID = grpc.StatusCode.INVALID_ARGUMENT

# Tokens no server ever made: bad base64, bad JSON, wrong shapes and types, values the
# database cannot hold (NUL in text, numbers beyond bigint), deep nesting.
CRAFTED = [
    "%%%",
    "////",
    "gAAAAA",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    base64.urlsafe_b64encode(b"[" * 100_000).decode()[:2000],
    base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),
    "A" * 10_000,
    encode_token(["a"]),
    encode_token(["a", "not-a-uuid"]),
    encode_token(["a", 5]),
    encode_token([1, str(uuid.uuid4())]),
    encode_token(["a\x00b", str(uuid.uuid4())]),
    encode_token([2**70]),
    encode_token(["x" * 1500, str(uuid.uuid4())]),
]


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("token", CRAFTED)
async def test_crafted_page_tokens_are_invalid_argument(
    stub: Stub, make_org: Any, make_user: Any, token: str
) -> None:
    org_id = str(await make_org())
    user = (await make_user()).user
    await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=user.id))
    calls = [
        stub.ListOrganizations(pb.ListOrganizationsRequest(page_token=token)),
        stub.ListOrganizations(
            pb.ListOrganizationsRequest(member_user_id=user.id, page_token=token)
        ),
        stub.ListMembers(pb.ListMembersRequest(organization_id=org_id, page_token=token)),
    ]
    assert [await code_of(c) for c in calls] == [INVALID] * len(calls)


async def test_paging_still_walks_every_row(stub: Stub, make_org: Any, make_user: Any) -> None:
    user = (await make_user()).user
    org_ids = {str(await make_org()) for _ in range(5)}
    for org_id in org_ids:
        await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=user.id))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListOrganizations(
            pb.ListOrganizationsRequest(member_user_id=user.id, page_size=2, page_token=token)
        )
        seen += [o.id for o in page.organizations]
        if not (token := page.next_page_token):
            break
    assert sorted(seen) == sorted(org_ids)


# --- soft-deleted users ------------------------------------------------------------------------


async def test_a_soft_deleted_user_has_no_membership(
    stub: Stub, make_org: Any, make_user: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org_id = str(await make_org())
    user = (await make_user()).user
    other = (await make_user()).user
    for member in (user, other):
        await stub.AddMember(pb.AddMemberRequest(organization_id=org_id, user_id=member.id))
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(User)
            .where(User.id == uuid.UUID(user.id))
            .values(deleted_at=datetime.now(UTC))
        )

    check = await stub.CheckMembership(
        pb.CheckMembershipRequest(organization_id=org_id, user_id=user.id)
    )
    assert not check.is_member
    listed = await stub.ListOrganizations(pb.ListOrganizationsRequest(member_user_id=user.id))
    assert list(listed.organizations) == []
    members = await stub.ListMembers(pb.ListMembersRequest(organization_id=org_id))
    assert [m.user_id for m in members.members] == [other.id]
    # The one still alive keeps access.
    still = await stub.CheckMembership(
        pb.CheckMembershipRequest(organization_id=org_id, user_id=other.id)
    )
    assert still.is_member


# --- sign-in: concurrency and tokens -----------------------------------------------------------


def sign_in(n: int, **overrides: Any) -> pb.UpsertUserFromGitHubRequest:
    fields: dict[str, Any] = {
        "github_user_id": n,
        "login": f"concurrent-{n}",
        "email": f"concurrent-{n}@example.com",
        "email_verified": True,
        "access_token": f"gho_concurrent_access_{n}",
        "refresh_token": f"ghr_concurrent_refresh_{n}",
    }
    return pb.UpsertUserFromGitHubRequest(**(fields | overrides))


async def test_concurrent_sign_ins_of_one_user_all_succeed(
    stub: Stub, capfd: pytest.CaptureFixture[str]
) -> None:
    for _ in range(5):  # a race: several rounds, to meet its interleavings
        n = 70_000_000 + uuid.uuid4().int % 1_000_000
        results = await asyncio.gather(
            *(stub.UpsertUserFromGitHub(sign_in(n)) for _ in range(6)), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, failed
        answers = [r for r in results if isinstance(r, pb.UpsertUserFromGitHubResponse)]
        assert len({a.user.id for a in answers}) == 1
        assert sum(a.created for a in answers) == 1
        logged = capfd.readouterr()
        assert f"gho_concurrent_access_{n}" not in logged.out + logged.err


async def test_concurrent_sign_ins_with_one_verified_email_are_never_internal(
    stub: Stub, capfd: pytest.CaptureFixture[str]
) -> None:
    n = 71_000_000 + uuid.uuid4().int % 1_000_000
    email = f"shared-{n}@example.com"
    requests = [sign_in(n + i, email=email) for i in range(4)]
    results = await asyncio.gather(
        *(stub.UpsertUserFromGitHub(r) for r in requests), return_exceptions=True
    )
    codes = [
        r.code() if isinstance(r, grpc.aio.AioRpcError) else grpc.StatusCode.OK for r in results
    ]
    clean = {grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED}
    assert set(codes) <= clean, codes
    assert grpc.StatusCode.OK in codes
    logged = capfd.readouterr()
    for r in requests:
        assert r.access_token not in logged.out + logged.err


async def test_github_tokens_are_encrypted_at_rest(
    stub: Stub, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    n = 72_000_000 + uuid.uuid4().int % 1_000_000
    user = (await stub.UpsertUserFromGitHub(sign_in(n))).user
    async with sessionmaker() as session:
        row = (
            await session.execute(
                sa.select(OAuthAccount.access_token, OAuthAccount.refresh_token).where(
                    OAuthAccount.user_id == uuid.UUID(user.id)
                )
            )
        ).one()
    stored = " ".join(str(v) for v in row)
    assert "gho_" not in stored
    assert "ghr_" not in stored
    assert f"concurrent_access_{n}" not in stored


async def test_token_keys_rotate_and_plain_tokens_get_encrypted(
    stub: Stub, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    n = 73_000_000 + uuid.uuid4().int % 1_000_000
    user = (await stub.UpsertUserFromGitHub(sign_in(n))).user
    legacy = (await stub.UpsertUserFromGitHub(sign_in(n + 1))).user
    async with sessionmaker.begin() as session:  # as stored before encryption existed
        await session.execute(
            sa.update(OAuthAccount)
            .where(OAuthAccount.user_id == uuid.UUID(legacy.id))
            .values(access_token="gho_plain_legacy", refresh_token=None)
        )
    new_key = Fernet.generate_key().decode()
    async with sessionmaker.begin() as session:
        # (Other packages' tests share this database, some with keys of their own: their rows
        # count as unreadable here; this test's rows are checked one by one below.)
        await reencrypt_all(session, TokenCipher([new_key, DEV_TOKEN_KEY]))

    only_new = TokenCipher([new_key])
    async with sessionmaker() as session:
        stored = dict(
            (
                await session.execute(sa.select(OAuthAccount.user_id, OAuthAccount.access_token))
            ).all()
        )
    assert only_new.decrypt(stored[uuid.UUID(user.id)]) == f"gho_concurrent_access_{n}"
    assert only_new.decrypt(stored[uuid.UUID(legacy.id)]) == "gho_plain_legacy"
    assert TokenCipher([DEV_TOKEN_KEY]).decrypt(stored[uuid.UUID(user.id)]) is None

    # Back to the key the test server uses, for the tests that follow.
    async with sessionmaker.begin() as session:
        await reencrypt_all(session, TokenCipher([DEV_TOKEN_KEY, new_key]))


@pytest.mark.parametrize("keys", ["", DEV_TOKEN_KEY, "not-a-fernet-key-but-long-enough-to-pass"])
def test_no_server_starts_without_a_real_token_key(
    settings: OrganizationSettings, keys: str
) -> None:
    deployed = settings.model_copy(
        update={"dev_mode": False, "token_encryption_keys": SecretStr(keys)}
    )
    with pytest.raises(InsecureSecretError, match="POLAR_TOKEN_ENCRYPTION_KEYS"):
        TokenCipher.from_settings(deployed)
    real = Fernet.generate_key().decode()
    good = deployed.model_copy(
        update={"token_encryption_keys": SecretStr(f"{real}, {DEV_TOKEN_KEY}")}
    )
    with pytest.raises(InsecureSecretError):  # an old key may stay for a while, not a public one
        TokenCipher.from_settings(good)
    assert (
        TokenCipher.from_settings(
            deployed.model_copy(update={"token_encryption_keys": SecretStr(real)})
        ).decrypt(Fernet(real.encode()).encrypt(b"t").decode())
        == "t"
    )


async def test_a_deleted_user_cannot_sign_in_again(
    stub: Stub, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    n = 74_000_000 + uuid.uuid4().int % 1_000_000
    user = (await stub.UpsertUserFromGitHub(sign_in(n))).user
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(User)
            .where(User.id == uuid.UUID(user.id))
            .values(deleted_at=datetime.now(UTC))
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpsertUserFromGitHub(sign_in(n))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --- who may call ------------------------------------------------------------------------------


async def test_only_allowed_callers_reach_the_organization_service(
    server: RunningServer, settings: OrganizationSettings, make_org: Any, make_user: Any
) -> None:
    org_id = str(await make_org())
    user_id = (await make_user()).user.id
    add = pb.AddMemberRequest(organization_id=org_id, user_id=user_id)
    target = f"127.0.0.1:{server.port}"
    # Without credentials: the finding's attack (add oneself to any organization).
    async with grpc.aio.insecure_channel(target) as ch:
        stub = OrganizationServiceStub(ch)
        assert await code_of(stub.AddMember(add)) == grpc.StatusCode.UNAUTHENTICATED
        assert (
            await code_of(stub.ListOrganizations(pb.ListOrganizationsRequest()))
            == grpc.StatusCode.UNAUTHENTICATED
        )
    # The gateway's credentials: what its routes use, not membership changes or deletion.
    async with auth.channel(target, auth.credentials(auth.GATEWAY, settings)) as ch:
        stub = OrganizationServiceStub(ch)
        assert await code_of(stub.GetUser(pb.GetUserRequest(id=user_id))) == grpc.StatusCode.OK
        assert await code_of(stub.AddMember(add)) == grpc.StatusCode.PERMISSION_DENIED
        delete = stub.DeleteOrganization(pb.DeleteOrganizationRequest(id=org_id))
        assert await code_of(delete) == grpc.StatusCode.PERMISSION_DENIED
    # Another service's credentials: the repository service calls nothing here.
    async with auth.channel(target, auth.credentials(auth.REPOSITORY, settings)) as ch:
        stub = OrganizationServiceStub(ch)
        assert await code_of(stub.AddMember(add)) == grpc.StatusCode.PERMISSION_DENIED
        assert (
            await code_of(stub.GetUser(pb.GetUserRequest(id=user_id)))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    members = await stub_members(target, settings, org_id)
    assert user_id not in members


async def stub_members(target: str, settings: OrganizationSettings, org_id: str) -> list[str]:
    async with auth.operator_channel(target, settings) as ch:
        listed = await OrganizationServiceStub(ch).ListMembers(
            pb.ListMembersRequest(organization_id=org_id)
        )
    return [m.user_id for m in listed.members]


async def test_a_token_no_key_opens_asks_for_a_new_sign_in(
    stub: Stub, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    n = 75_000_000 + uuid.uuid4().int % 1_000_000
    user = (await stub.UpsertUserFromGitHub(sign_in(n))).user
    other_key = TokenCipher([Fernet.generate_key().decode()])
    async with sessionmaker.begin() as session:  # e.g. written under a key since removed
        await session.execute(
            sa.update(OAuthAccount)
            .where(OAuthAccount.user_id == uuid.UUID(user.id))
            .values(access_token=other_key.encrypt("gho_lost"))
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.InstallOrganization(
            pb.InstallOrganizationRequest(
                user_id=user.id, platform=PLATFORM_GITHUB, installation_id=12345
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sign in with GitHub" in (caught.value.details() or "")
