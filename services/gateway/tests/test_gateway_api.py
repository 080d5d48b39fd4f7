"""The API's routes for a member: users, organizations, repositories, issues, PRs, rewards."""

from __future__ import annotations

import uuid

import httpx
import sqlalchemy as sa
from gateway_support import GitHubWorld, Install, MakeRepos, Seed, SignIn, conforms, metrics_text
from polar_client import AuthenticatedClient
from polar_client.api.repositories import create_reward_api_v2_rewards_post as create_reward
from polar_client.api.repositories import (
    list_rewards_api_v2_rewards_platform_org_repo_get as list_rewards,
)
from polar_client.models import ErrorResponse, MoneyInput, PageRewardRead, RewardCreate, RewardRead
from polar_db.models import SyncJob, SyncStatus
from polar_dev.fake_github import FakeGitHub
from polar_gateway import schemas
from polar_gateway.routes.repository_sync import RepositorySyncRead
from polar_gateway.testing import RunningGateway
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def _grpc_calls(client: httpx.AsyncClient, method: str) -> float:
    """grpc_client_handled_total of one method, all codes, from /metrics."""
    text = await metrics_text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_client_handled_total{") and f'grpc_method="{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_me(client: httpx.AsyncClient, sign_in: SignIn) -> None:
    member = await sign_in()
    response = await client.get("/api/v2/users/me", headers=member.headers)
    assert response.status_code == 200
    body = response.json()
    conforms(schemas.UserRead, body)
    assert body["id"] == member.user_id
    assert body["username"] == member.github.login
    assert body["avatar_url"].endswith(".png")
    assert body["created_at"]


async def test_patch_me_accepts_nothing_it_cannot_honour(
    client: httpx.AsyncClient, sign_in: SignIn
) -> None:
    member = await sign_in()
    ok = await client.patch("/api/v2/users/me", json={}, headers=member.headers)
    assert ok.status_code == 200
    assert ok.json()["id"] == member.user_id
    refused = await client.patch("/api/v2/users/me", json={"username": "x"}, headers=member.headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["location"] == ["body", "username"]


async def test_user_organizations_with_repositories_in_two_calls(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install, make_repos: MakeRepos
) -> None:
    member = await sign_in()
    other = await sign_in()
    orgs = [await install(member) for _ in range(3)]
    repos = {org.id: await make_repos(org, count=n) if n else [] for n, org in enumerate(orgs)}
    await make_repos(await install(other), count=2)  # not the member's

    lists_before = await _grpc_calls(client, "ListRepositories")
    orgs_before = await _grpc_calls(client, "ListOrganizations")
    response = await client.get("/api/v2/user/organizations", headers=member.headers)
    assert response.status_code == 200, response.text
    assert await _grpc_calls(client, "ListRepositories") == lists_before + 1
    assert await _grpc_calls(client, "ListOrganizations") == orgs_before + 1

    body = response.json()
    conforms(schemas.Page[schemas.OrganizationWithRepositories], body)
    assert body["next_cursor"] is None
    assert {o["id"] for o in body["items"]} == {o.id for o in orgs}
    for item in body["items"]:
        assert {r["id"] for r in item["repositories"]} == {r.id for r in repos[item["id"]]}
        assert item["status"] == "active"
        assert item["platform"] == "github"


async def test_user_organizations_pages_with_limit_and_cursor(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install
) -> None:
    member = await sign_in()
    ids = {(await install(member)).id for _ in range(3)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await client.get("/api/v2/user/organizations", params=params, headers=member.headers)
        assert page.status_code == 200
        seen += [o["id"] for o in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 3


async def test_user_organizations_without_any(client: httpx.AsyncClient, sign_in: SignIn) -> None:
    member = await sign_in()
    response = await client.get("/api/v2/user/organizations", headers=member.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_install_an_installation_the_user_can_see(
    client: httpx.AsyncClient, sign_in: SignIn, world: GitHubWorld, github: FakeGitHub
) -> None:
    member = await sign_in()
    installation = world.new_installation(member.github)
    body = {"platform": "github", "external_id": installation["id"]}
    response = await client.post(
        "/api/v2/integrations/github/installations", json=body, headers=member.headers
    )
    assert response.status_code == 200, response.text
    org = response.json()
    conforms(schemas.OrganizationRead, org)
    assert org["installation_id"] == installation["id"]
    assert org["name"] == installation["account"]["login"]
    # Installing again is harmless.
    again = await client.post(
        "/api/v2/integrations/github/installations", json=body, headers=member.headers
    )
    assert again.status_code == 200
    assert again.json()["id"] == org["id"]
    # And the member can now read it.
    got = await client.get(f"/api/v2/organizations/{org['id']}", headers=member.headers)
    assert got.status_code == 200


async def test_install_an_installation_the_user_cannot_see_is_404(
    client: httpx.AsyncClient, sign_in: SignIn, world: GitHubWorld
) -> None:
    member = await sign_in()
    stranger = world.new_user()
    installation = world.new_installation(stranger)
    response = await client.post(
        "/api/v2/integrations/github/installations",
        json={"platform": "github", "external_id": installation["id"]},
        headers=member.headers,
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_organization_and_repository_by_id(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install, make_repos: MakeRepos
) -> None:
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    got = await client.get(f"/api/v2/organizations/{org.id}", headers=member.headers)
    assert got.status_code == 200
    assert got.json()["name"] == org.name
    got = await client.get(f"/api/v2/repositories/{repo.id}", headers=member.headers)
    assert got.status_code == 200
    conforms(schemas.RepositoryRead, got.json())
    assert got.json() | {"topics": ["python"]} == got.json()
    assert got.json()["organization_id"] == org.id
    for path in (f"/api/v2/organizations/{uuid.uuid4()}", f"/api/v2/repositories/{uuid.uuid4()}"):
        assert (await client.get(path, headers=member.headers)).status_code == 404


async def test_issues_and_pull_requests_of_a_repository(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
) -> None:
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    await seed.issues(repo, 5)
    await seed.pull_requests(repo, 3)

    path = f"/api/v2/issues/github/{org.name}/{repo.name}"
    first = await client.get(path, params={"limit": 3}, headers=member.headers)
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 3
    conforms(schemas.Page[schemas.IssueRead], first.json())
    cursor = first.json()["next_cursor"]
    assert cursor
    rest = await client.get(path, params={"limit": 3, "cursor": cursor}, headers=member.headers)
    assert len(rest.json()["items"]) == 2
    assert rest.json()["next_cursor"] is None
    issue = first.json()["items"][0]
    assert issue["repository_id"] == repo.id
    assert issue["labels"] == [{"id": 7, "name": "bug", "color": "d73a4a"}]
    assert issue["author"]["login"] == "octocat"

    opened = await client.get(path, params={"state": "open"}, headers=member.headers)
    assert {i["state"] for i in opened.json()["items"]} == {"open"}
    assert len(opened.json()["items"]) == 3

    prs = await client.get(
        f"/api/v2/pull_requests/github/{org.name}/{repo.name}", headers=member.headers
    )
    assert prs.status_code == 200
    assert len(prs.json()["items"]) == 3
    conforms(schemas.Page[schemas.PullRequestRead], prs.json())
    assert prs.json()["items"][0]["base_ref"] == "main"


async def test_rewards(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
) -> None:
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    created = await client.post(
        "/api/v2/rewards",
        json={"issue_id": issue_id, "amount": {"currency": "usd", "amount": 2500}},
        headers=member.headers,
    )
    assert created.status_code == 201, created.text
    reward = created.json()
    conforms(schemas.RewardRead, reward)
    assert reward["amount"] == {"currency": "USD", "amount": 2500}
    assert reward["backer_user_id"] == member.user_id
    assert reward["issue_id"] == issue_id
    listed = await client.get(
        f"/api/v2/rewards/github/{org.name}/{repo.name}", headers=member.headers
    )
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["items"]] == [reward["id"]]
    conforms(schemas.Page[schemas.RewardRead], listed.json())


async def test_a_reward_retried_with_its_idempotency_key_is_created_once(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
) -> None:
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    body = {"issue_id": issue_id, "amount": {"currency": "USD", "amount": 900}}

    async def post(key: str | None) -> str:
        headers = member.headers | ({"Idempotency-Key": key} if key else {})
        response = await client.post("/api/v2/rewards", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    key = str(uuid.uuid4())
    first = await post(key)
    assert await post(key) == first
    others = {await post(None), await post(None), await post("another key")}
    assert len(others) == 3
    assert first not in others
    listed = await client.get(
        f"/api/v2/rewards/github/{org.name}/{repo.name}", headers=member.headers
    )
    assert len(listed.json()["items"]) == 4


async def test_the_generated_client_creates_lists_and_reads_errors(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
) -> None:
    """libs/polar_client (generated from the v2 OpenAPI document) against the running API."""
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    api = AuthenticatedClient(base_url=str(client.base_url), token=member.token)
    body = RewardCreate(issue_id=uuid.UUID(issue_id), amount=MoneyInput(currency="USD", amount=300))
    async with api:
        created = await create_reward.asyncio(client=api, body=body, idempotency_key="k-1")
        again = await create_reward.asyncio(client=api, body=body, idempotency_key="k-1")
        page = await list_rewards.asyncio("github", org.name, repo.name, client=api)
        body.amount.currency = "XYZ"
        refused = await create_reward.asyncio_detailed(client=api, body=body)
    assert isinstance(created, RewardRead)
    assert isinstance(again, RewardRead)
    assert again.id == created.id
    assert isinstance(page, PageRewardRead)
    assert [r.id for r in page.items] == [created.id]
    assert refused.status_code == 422
    assert isinstance(refused.parsed, ErrorResponse)
    details = refused.parsed.error.details
    assert isinstance(details, list)
    assert [d.field for d in details] == ["amount.currency"]


async def test_a_service_error_names_the_fields_and_the_reason(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
) -> None:
    """The service's google.rpc details reach the caller in v2's error object."""
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    invalid = await client.post(
        "/api/v2/rewards",
        json={"issue_id": issue_id, "amount": {"currency": "XYZ", "amount": 100}},
        headers=member.headers,
    )
    assert invalid.status_code == 422, invalid.text
    error = invalid.json()["error"]
    conforms(schemas.ErrorResponse, invalid.json())
    # The domain is the service that answered: rewards are the reward service's (decision 0027).
    assert (error["reason"], error["domain"]) == ("INVALID_ARGUMENT", "polar.reward.v1")
    [detail] = error["details"]
    assert detail["field"] == "amount.currency"
    assert detail["location"] == ["amount", "currency"]
    assert detail["type"] == "field_violation"
    assert "must be one of" in detail["message"]

    missing_issue = str(uuid.uuid4())
    unknown = await client.post(
        "/api/v2/rewards",
        json={"issue_id": missing_issue, "amount": {"currency": "USD", "amount": 100}},
        headers=member.headers,
    )
    assert unknown.status_code == 404, unknown.text
    error = unknown.json()["error"]
    conforms(schemas.ErrorResponse, unknown.json())
    assert error["reason"] == "ISSUE_NOT_FOUND"
    assert error["resource"] == {"type": "polar.repository.v1.Issue", "name": missing_issue}
    assert "details" not in error


async def test_unknown_repository_names_are_404(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install
) -> None:
    member = await sign_in()
    org = await install(member)
    for kind in ("issues", "pull_requests", "rewards"):
        response = await client.get(
            f"/api/v2/{kind}/github/{org.name}/nope", headers=member.headers
        )
        assert response.status_code == 404, kind
        response = await client.get(f"/api/v2/{kind}/github/no-such-org/x", headers=member.headers)
        assert response.status_code == 404, kind


async def test_request_ids_travel_to_the_services_and_back(
    client: httpx.AsyncClient, sign_in: SignIn, gateway: RunningGateway
) -> None:
    member = await sign_in()
    response = await client.get(
        "/api/v2/users/me", headers=member.headers | {"X-Request-ID": "trace-me-123"}
    )
    assert response.headers["x-request-id"] == "trace-me-123"
    weird = await client.get("/api/v2/users/me", headers={"X-Request-ID": "bad id\twith tab"})
    assert weird.headers["x-request-id"] != "bad id\twith tab"


async def test_the_sync_state_of_a_repository(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    path = f"/api/v2/repositories/{repo.id}/sync"

    idle = await client.get(path, headers=member.headers)
    assert idle.status_code == 200
    conforms(RepositorySyncRead, idle.json())
    assert (idle.json()["status"], idle.json()["job_id"]) == ("idle", None)

    # A sync that failed and waits for its retry (what the repository service's sync writes).
    job_id = uuid.uuid4()
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.insert(SyncJob).values(
                repository_id=uuid.UUID(repo.id),
                job_id=job_id,
                status=SyncStatus.failed,
                trigger="request",
                run_at=sa.func.now() + sa.text("interval '30 seconds'"),
                pages=3,
                pages_expected=5,
                issues=250,
                expected=401,
                attempts=1,
                failure_reason="github_unavailable",
                failure_message="GET /repos/o/r/issues: GitHub failed: 502",
                skipped_count=1,
                skipped=[{"kind": "issue", "id": 7, "number": 3, "reason": "number is missing"}],
            )
        )
    failed = await client.get(path, headers=member.headers)
    assert failed.status_code == 200
    body = conforms(RepositorySyncRead, failed.json())
    assert (body.status, body.job_id, body.failure_reason) == (
        "failed",
        job_id,
        "github_unavailable",
    )
    assert (body.page, body.pages, body.synced, body.expected) == (3, 5, 251, 401)
    assert body.next_run_at is not None
    assert [(s.external_id, s.number) for s in body.skipped_items] == [(7, 3)]
