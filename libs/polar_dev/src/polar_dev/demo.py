"""`make demo`: the cluster with one coherent story loaded, and commands to explore it.

The story goes through the real front door, as in production: a maintainer (Codertocat, the
sender of the recorded installation webhook) signs in through the gateway's GitHub sign-in,
served by the fake GitHub; then GitHub's deliveries for their installation arrive at the
gateway's webhook endpoint, signed, in the order GitHub sends them (`send_webhooks`): the app
is installed, a repository is added, an issue is opened, edited, labelled and assigned, a pull
request is opened, labelled and closed. The repository sync runs against the fake GitHub and
adds its issues too. Then the runner prints the user id, a session token and commands to try.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from .fake_github import FakeGitHub, json_response

MAINTAINER = "Codertocat"
ORGANIZATION, REPOSITORY = "Codertocat", "Hello-World"
STORY = (
    "installation/created.payload.json",
    "installation_repositories/added.payload.json",
    "issues/opened.payload.json",
    "issues/edited.payload.json",
    "issues/labeled.payload.json",
    "issues/assigned.payload.json",
    "pull_request/opened.payload.json",
    "pull_request/labeled.payload.json",
    "pull_request/closed.payload.json",
)
AUTHORIZE_PATH = "/api/v2/integrations/github/authorize"
REWARD_BODY = """'{"issue_id": "'$ISSUE_ID'", "amount": {"currency": "USD", "amount": 5000}}'"""


class DemoError(RuntimeError):
    pass


def serve_issues_to_the_sync(github: FakeGitHub) -> None:
    """The recorded issue list holds one item, and it is a pull request (it has a
    `pull_request` key), so a sync would find no issue. For the demo, the fake GitHub lists
    it as a plain issue of Hello-World (and nothing for other repositories: GitHub ids are
    global, one issue cannot be in two): the sync then brings an issue that no webhook did
    (#1347, "Found a bug", beside the webhooks' #1)."""
    recorded = github.fixture("issues/list-for-repo")
    ours = f"/repos/{ORGANIZATION}/{REPOSITORY}/issues"

    async def issues(request: web.Request) -> web.Response:
        if request.path.rstrip("/") != ours:
            return json_response([])
        return json_response(
            [
                {
                    **{k: v for k, v in item.items() if k != "pull_request"},
                    "repository_url": f"https://api.github.com/repos/{ORGANIZATION}/{REPOSITORY}",
                }
                for item in recorded
            ]
        )

    github.handle("GET", "/repos/{owner}/{repo}/issues", issues)


async def sign_in(gateway: str, github: FakeGitHub, login: str = MAINTAINER) -> str:
    """GitHub sign-in through the gateway, clicking "Sign in as <login>" on the fake GitHub.

    Returns the session token (the session cookie's value, also valid as a bearer token).
    """
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        start = await http.get(AUTHORIZE_PATH)
        if start.is_redirect:
            authorize_url = start.headers["location"]
        elif start.status_code == 200 and "authorization_url" in start.json():
            authorize_url = start.json()["authorization_url"]
        else:
            raise DemoError(f"sign-in did not start: {start.status_code} {start.text[:200]}")
        page = (await http.get(authorize_url)).text
        link = re.search(rf'id="as-{re.escape(login)}" href="([^"]+)"', page)
        if link is None:
            raise DemoError(f"the fake GitHub offers no sign-in as {login}")
        callback = await http.get(link.group(1).replace("&amp;", "&"))
        if callback.status_code >= 400:
            raise DemoError(f"sign-in failed: {callback.status_code} {callback.text[:200]}")
        for cookie in http.cookies.jar:
            if cookie.value and cookie.value.count(".") == 2 and "state" not in cookie.name:
                return cookie.value
    raise DemoError("signed in, but the gateway set no session cookie")


async def send_story(webhooks: Path, env: Mapping[str, str]) -> None:
    files = [str(webhooks / name) for name in STORY]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polar_gateway.send_webhooks",
        *files,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise DemoError(f"sending the webhooks failed:\n{output.decode(errors='replace')}")


async def wait_for_issues(gateway: str, token: str, within: float = 60) -> list[dict[str, Any]]:
    """The repository's issues, once the webhooks and the sync have brought theirs."""
    path = f"/api/v2/issues/github/{ORGANIZATION}/{REPOSITORY}"
    headers = {"Authorization": f"Bearer {token}"}
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        while True:
            answer = await http.get(path, headers=headers)
            if answer.status_code == 200:
                body = answer.json()
                issues = body["items"] if isinstance(body, dict) else body
                if len(issues) >= 2:
                    return list(issues)
            if asyncio.get_running_loop().time() > deadline:
                why = f"{answer.status_code} {answer.text[:200]}"
                raise DemoError(f"no issues after {within:.0f}s: {why}")
            await asyncio.sleep(0.5)


async def user_id(gateway: str, token: str) -> str:
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        me = await http.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
        me.raise_for_status()
        return str(me.json()["id"])


def instructions(
    gateway: str, grpc_organization: str, uid: str, token: str, issue_id: str, org_id: str
) -> list[str]:
    auth = '-H "Authorization: Bearer $TOKEN"'
    return [
        "demo loaded: Codertocat installed the app; Hello-World has issues and a pull request",
        f"USER_ID={uid}",
        f"TOKEN={token}",
        f"ISSUE_ID={issue_id}",
        f"ORGANIZATION_ID={org_id}",
        "try (paste the four lines above first):",
        f"  curl {auth} {gateway}/api/v2/issues/github/{ORGANIZATION}/{REPOSITORY}",
        f"  curl {auth} -H 'Content-Type: application/json' {gateway}/api/v2/rewards "
        '-d \'{"issue_id": "\'$ISSUE_ID\'", "amount": {"currency": "USD", "amount": 5000}}\'',
        f"  curl -N {auth} {gateway}/api/v2/stream   # live events: create a reward meanwhile",
        f"  .tools/bin/uv run python -m polar_dev.grpc_call {grpc_organization} "
        "polar.organization.v1.OrganizationService/ListOrganizations "
        "'{\"member_user_id\": \"'$USER_ID'\"}'",
        f"  open {gateway}/docs   (sign in there through the fake GitHub as well)",
    ]


async def load(
    gateway: str,
    grpc_organization: str,
    github: FakeGitHub,
    env: Mapping[str, str],
    webhooks: Path,
) -> list[str]:
    """Loads the story; returns the lines to print."""
    token = await sign_in(gateway, github)
    uid = await user_id(gateway, token)
    await send_story(webhooks, env)
    issues = await wait_for_issues(gateway, token)
    issue = issues[0]
    return instructions(
        gateway, grpc_organization, uid, token, str(issue["id"]), str(issue["organization_id"])
    )
