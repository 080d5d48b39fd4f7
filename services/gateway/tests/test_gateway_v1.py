"""/api/v1: the monolith's contract, driven as its web app drives it.

Every answer is checked twice: against the gateway's own v1 models (strict: no field more)
and against the repository's hand-written v1 OpenAPI document (v1_contract).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import v1_contract
from gateway_support import (
    WEBHOOK_SECRET,
    GitHubWorld,
    Install,
    MakeRepos,
    Member,
    Org,
    Seed,
    SignIn,
    conforms,
    sign,
)
from nats.js import JetStreamContext
from polar.repository.v1 import events_pb2 as repo_events
from polar.repository.v1 import repository_pb2
from polar_dev.fake_github import FakeGitHub
from polar_gateway import schemas_v1
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway
from polar_organization import superuser
from polar_organization.settings import OrganizationSettings
from test_gateway_stream import Events, EventStream

V1 = "/api/v1"
DOC = v1_contract.load()


def checked(response: httpx.Response, model: Any, schema: str, *, array: bool = False) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    conforms(list[model] if array else model, body)
    v1_contract.validate(DOC, schema, body, array=array)
    return body


async def sign_in_v1(http: httpx.AsyncClient, code: str) -> httpx.Response:
    """The web app's sign-in: authorize (XHR, JSON), the browser at GitHub, then GitHub's
    return to the web app's page, which passes code and state to callback (XHR)."""
    authorize = await http.get(
        f"{V1}/integrations/github/authorize", params={"scopes": ["user", "user:email"]}
    )
    body = checked(authorize, schemas_v1.OAuth2AuthorizeResponse, "OAuth2AuthorizeResponse")
    query = parse_qs(urlsplit(body["authorization_url"]).query)
    assert query["scope"] == ["user user:email"]
    assert "redirect_uri" not in query  # GitHub returns to the App's callback URL (the web app)
    return await http.get(
        f"{V1}/integrations/github/callback", params={"code": code, "state": query["state"][0]}
    )


async def test_the_gateway_serves_the_v1_document(client: httpx.AsyncClient) -> None:
    """Every route, parameter, status and schema of the repository's v1 document, and no
    other route under /api/v1."""
    served = (await client.get(f"{V1}/openapi.json")).json()
    expected = v1_contract.operations(DOC)
    actual = v1_contract.operations(served)
    assert sorted(actual) == sorted(expected)
    for operation, spec in expected.items():
        assert actual[operation] == spec, operation


async def test_the_web_apps_whole_flow(
    gateway: RunningGateway,
    gateway_settings: GatewaySettings,
    github: FakeGitHub,
    world: GitHubWorld,
    make_repos: MakeRepos,
    seed: Seed,
) -> None:
    user = world.new_user()
    installation = world.new_installation(user)
    cookie_name = gateway_settings.session_cookie_name
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        callback = await sign_in_v1(http, user.code)
        assert checked(callback, schemas_v1.ActionResponse, "ActionResponse") == {
            "action": "login",
            "success": True,
        }
        set_cookie = next(
            c for c in callback.headers.get_list("set-cookie") if c.startswith(f"{cookie_name}=")
        )
        assert "httponly" in set_cookie.lower()
        assert cookie_name in http.cookies

        me = checked(await http.get(f"{V1}/users/me"), schemas_v1.UserRead, "UserRead")
        assert me["profile"]["login"] == user.login
        assert me["profile"]["avatar_url"].endswith(".png")
        assert me["profile"]["name"] == f"User {user.id}"
        assert me["profile"]["id"] == user.id
        assert me["email"] == user.email
        assert me["is_verified"] is True
        assert me["is_superuser"] is False

        installed = await http.post(
            f"{V1}/integrations/github/installations",
            json={"platform": "github", "external_id": installation["id"]},
        )
        org = checked(installed, schemas_v1.OrganizationRead, "OrganizationRead")
        assert org["installation_id"] == installation["id"]
        [repo] = await make_repos(Org(org["id"], org["name"], installation["id"]))
        [issue_id, *_] = await seed.issues(repo, 3)
        await seed.pull_requests(repo, 2)

        orgs = checked(
            await http.get(f"{V1}/user/organizations"),
            schemas_v1.OrganizationRead,
            "OrganizationRead",
            array=True,
        )
        assert [o["id"] for o in orgs] == [org["id"]]
        # What the web app reads: organizations.map(...), each one's repositories.
        assert [r["name"] for r in orgs[0]["repositories"]] == [repo.name]
        assert orgs[0]["repositories"][0]["visibility"] == "public"

        where = f"github/{org['name']}/{repo.name}"
        issues = checked(
            await http.get(f"{V1}/issues/{where}"), schemas_v1.IssueRead, "IssueRead", array=True
        )
        assert len(issues) == 3
        assert issues[0]["author"]["login"] == "octocat"
        # GitHub's own objects, as the payloads carried them (integers stay integers).
        assert issues[0]["milestone"] == {"id": 3, "number": 1, "title": "v1", "state": "open"}
        assert issues[0]["reactions"] == {"total_count": 2, "+1": 2, "heart": 0}
        pulls = checked(
            await http.get(f"{V1}/pull_requests/{where}"),
            schemas_v1.PullRequestRead,
            "PullRequestRead",
            array=True,
        )
        assert {p["base"]["ref"] for p in pulls} == {"main"}

        created = await http.post(f"{V1}/rewards", json={"issue_id": issue_id, "amount": 2500})
        reward = checked(created, schemas_v1.RewardRead, "RewardRead")
        assert reward["amount"] == 2500
        assert reward["state"] == "created"
        rewards = checked(
            await http.get(f"{V1}/rewards/{where}"),
            schemas_v1.RewardRead,
            "RewardRead",
            array=True,
        )
        assert [r["id"] for r in rewards] == [reward["id"]]

        logout = await http.post(f"{V1}/users/logout")
        assert checked(logout, schemas_v1.ActionResponse, "ActionResponse") == {
            "action": "logout",
            "success": True,
        }
        assert cookie_name not in http.cookies
    # The token is revoked, not only the cookie gone.
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        token = set_cookie.split(";")[0].split("=", 1)[1]
        again = await http.get(f"{V1}/users/me", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401
    assert isinstance(again.json()["detail"], str)


async def test_v2_amounts_are_the_same_cents_in_usd(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install, make_repos: MakeRepos, seed: Seed
) -> None:
    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    created = await client.post(
        f"{V1}/rewards", json={"issue_id": issue_id, "amount": 1999.0}, headers=member.headers
    )
    assert created.status_code == 200, created.text
    listed = await client.get(
        f"/api/v2/rewards/github/{org.name}/{repo.name}", headers=member.headers
    )
    assert [r["amount"] for r in listed.json()["items"]] == [{"currency": "USD", "amount": 1999}]
    # A v2 reward in another currency has no bare v1 amount: v1 does not show it.
    euros = await client.post(
        "/api/v2/rewards",
        json={"issue_id": issue_id, "amount": {"currency": "EUR", "amount": 500}},
        headers=member.headers,
    )
    assert euros.status_code == 201, euros.text
    v1 = await client.get(f"{V1}/rewards/github/{org.name}/{repo.name}", headers=member.headers)
    assert [r["amount"] for r in v1.json()] == [1999]


async def test_errors_are_detail(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install, make_repos: MakeRepos, seed: Seed
) -> None:
    unauthenticated = await client.get(f"{V1}/users/me")
    assert unauthenticated.status_code == 401
    v1_contract.validate(DOC, "ErrorDetail", unauthenticated.json())

    member = await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    for amount in (12.5, 0, -3, "a lot"):
        invalid = await client.post(
            f"{V1}/rewards", json={"issue_id": issue_id, "amount": amount}, headers=member.headers
        )
        assert invalid.status_code == 422, amount
        v1_contract.validate(DOC, "HTTPValidationError", invalid.json())
        assert invalid.json()["detail"][0]["loc"] == ["body", "amount"]
    # Beyond what the service accepts: its field violation, at v1's body field.
    too_much = await client.post(
        f"{V1}/rewards",
        json={"issue_id": issue_id, "amount": 100_000_001},
        headers=member.headers,
    )
    assert too_much.status_code == 422, too_much.text
    v1_contract.validate(DOC, "HTTPValidationError", too_much.json())
    [violation] = too_much.json()["detail"]
    assert violation["loc"] == ["body", "amount"]
    assert "minor_units must be between 1 and" in violation["msg"]
    missing = await client.post(f"{V1}/rewards", json={}, headers=member.headers)
    assert {tuple(d["loc"]) for d in missing.json()["detail"]} == {
        ("body", "issue_id"),
        ("body", "amount"),
    }

    unknown = await client.get(f"{V1}/issues/github/{org.name}/nope", headers=member.headers)
    assert unknown.status_code == 404
    v1_contract.validate(DOC, "ErrorDetail", unknown.json())
    assert (await client.get(f"{V1}/no/such/route")).json() == {"detail": "Not Found"}
    # v2 keeps its error object.
    v2 = await client.get("/api/v2/users/me")
    assert v2.json()["error"]["code"] == "unauthenticated"


async def test_password_login_is_bad_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{V1}/users/login", data={"username": "someone@example.com", "password": "secret"}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "LOGIN_BAD_CREDENTIALS"}
    incomplete = await client.post(f"{V1}/users/login", data={"username": "x"})
    assert incomplete.status_code == 422
    v1_contract.validate(DOC, "HTTPValidationError", incomplete.json())


async def test_patch_me_refuses_what_github_owns(
    client: httpx.AsyncClient, sign_in: SignIn
) -> None:
    member = await sign_in()
    me = (await client.get(f"{V1}/users/me", headers=member.headers)).json()
    same = await client.patch(
        f"{V1}/users/me",
        json={"profile": me["profile"], "email": me["email"]},
        headers=member.headers,
    )
    assert same.status_code == 200
    assert same.json() == me
    for change in ({"password": "x"}, {"email": "other@example.com"}):
        refused = await client.patch(
            f"{V1}/users/me", json={"profile": {}} | change, headers=member.headers
        )
        assert refused.status_code == 400, change
        assert isinstance(refused.json()["detail"], str)


async def test_user_admin_needs_a_superuser(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    gateway_settings: GatewaySettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin, other = await sign_in(), await sign_in()
    path = f"{V1}/users/{other.user_id}"
    assert (await client.get(path, headers=admin.headers)).status_code == 403
    assert (await client.delete(path, headers=admin.headers)).status_code == 403

    # The operator's command, by username.
    settings = OrganizationSettings.model_validate({"database_url": gateway_settings.database_url})
    assert await superuser.run(admin.github.login, True, settings) == 0
    assert "is_superuser=True" in capsys.readouterr().out
    assert await superuser.run("nobody-at-all", True, settings) == 1

    me = await client.get(f"{V1}/users/me", headers=admin.headers)
    assert me.json()["is_superuser"] is True
    got = await client.get(path, headers=admin.headers)
    assert checked(got, schemas_v1.UserRead, "UserRead")["id"] == other.user_id
    assert (
        await client.get(f"{V1}/users/{uuid.uuid4()}", headers=admin.headers)
    ).status_code == 404
    deleted = await client.delete(path, headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(path, headers=admin.headers)).status_code == 404
    # The deleted user's session no longer works.
    assert (await client.get(f"{V1}/users/me", headers=other.headers)).status_code == 401


async def test_webhook_answers_webhook_response(client: httpx.AsyncClient) -> None:
    body = json.dumps({"action": "opened", "issue": {"id": 1}}).encode()
    delivery = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET),
    }
    url = f"{V1}/integrations/github/webhook"
    first = await client.post(url, content=body, headers=headers)
    assert first.status_code == 200
    assert checked(first, schemas_v1.WebhookResponse, "WebhookResponse") == {
        "success": True,
        "message": None,
        "task_id": delivery,
    }
    again = await client.post(url, content=body, headers=headers)
    assert again.json()["message"] == "duplicate"
    forged = await client.post(url, content=body, headers=headers | {"X-Hub-Signature-256": "x"})
    assert forged.status_code == 401
    v1_contract.validate(DOC, "ErrorDetail", forged.json())


async def test_stream_sends_the_monoliths_payloads(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
) -> None:
    member = await sign_in()
    org = await install(member)
    events = Events(js, gateway_settings)
    path = f"{V1}/stream"
    assert (await client.get(path, headers=member.headers)).status_code == 422  # org required

    async with client.stream(
        "GET", path, params={"organization_id": org.id}, headers=member.headers
    ) as response:
        assert response.status_code == 200
        stream = EventStream(response)
        assert await stream.frame() == {"comment": "ready"}
        repo_id = str(uuid.uuid4())
        issue = repository_pb2.Issue(
            id=str(uuid.uuid4()), organization_id=org.id, repository_id=repo_id, title="t"
        )
        sent = [
            await events.send(
                "polar.repository.v1.issue_created", repo_events.IssueCreated(issue=issue)
            ),
            await events.send(
                "polar.repository.v1.issue_updated", repo_events.IssueUpdated(issue=issue)
            ),
            await events.send(
                "polar.repository.v1.sync_progress",
                repo_events.RepositorySyncProgress(
                    repository_id=repo_id,
                    organization_id=org.id,
                    synced=1,
                    expected=7,
                    issue_id=issue.id,
                    issue_title="t",
                ),
            ),
            await events.send(
                "polar.repository.v1.sync_completed",
                repo_events.RepositorySyncCompleted(
                    repository_id=repo_id, organization_id=org.id, issues=7
                ),
            ),
        ]
        frames = [await stream.event() for _ in sent]
    assert all("event" not in f for f in frames)  # EventSource.onmessage gets them
    assert [f["data"] for f in frames] == [
        {"id": sent[0], "key": "issue.created", "payload": {"issue": issue.id}},
        {
            "id": sent[1],
            "key": "issue.updated",
            "payload": {"issue_id": issue.id, "organization_id": org.id, "repository_id": repo_id},
        },
        {
            "id": sent[2],
            "key": "issue.synced",
            "payload": {
                "issue": {"id": issue.id, "title": "t"},
                "expected": 7,
                "synced": 1,
                "repository_id": repo_id,
            },
        },
        {
            "id": sent[3],
            "key": "issue.sync.completed",
            "payload": {"expected": 7, "synced": 7, "repository_id": repo_id},
        },
    ]


async def test_github_unreachable_while_installing_is_503(
    client: httpx.AsyncClient, sign_in: SignIn, world: GitHubWorld, github: FakeGitHub
) -> None:
    member: Member = await sign_in()

    async def hang_up(request: Any) -> Any:
        # The connection drops without an answer: a transport error, as for a GitHub outage.
        assert request.transport is not None
        request.transport.close()
        raise ConnectionResetError

    github.handle("GET", "/user/installations", hang_up)
    for version in (V1, "/api/v2"):
        response = await client.post(
            f"{version}/integrations/github/installations",
            json={"platform": "github", "external_id": 424242},
            headers=member.headers,
        )
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
