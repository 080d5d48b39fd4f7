import html
import json
import re
from pathlib import Path

import aiohttp
import httpx
import jwt
from aiohttp import web
from polar_dev.fake_github import FakeGitHub


async def get(url: str, method: str = "GET") -> tuple[int, object]:
    async with aiohttp.ClientSession() as http, http.request(method, url) as response:
        return response.status, await response.json()


async def test_serves_recorded_responses(fake_github: FakeGitHub, github_fixtures: Path) -> None:
    rest = github_fixtures / "rest"
    cases = [
        ("GET", "/user/installations", "apps/list-installations-for-authenticated-user", 200),
        ("GET", "/app/installations/42", "apps/get-installation", 200),
        (
            "POST",
            "/app/installations/42/access_tokens",
            "apps/create-installation-access-token",
            201,
        ),
        ("GET", "/user", "users/get-authenticated", 200),
        ("GET", "/installation/repositories", "apps/list-repos-accessible-to-installation", 200),
        ("GET", "/repos/octo/hello/issues?state=all", "issues/list-for-repo", 200),
        ("GET", "/repos/octo/hello/pulls", "pulls/list", 200),
        ("GET", "/repos/octo/hello/pulls/7", "pulls/get", 200),
    ]
    for method, path, fixture, status in cases:
        expected = json.loads((rest / f"{fixture}.json").read_text())
        assert await get(fake_github.url + path, method) == (status, expected), path


async def test_unknown_route_is_404(fake_github: FakeGitHub) -> None:
    status, body = await get(fake_github.url + "/repos/octo/hello/labels")
    assert status == 404
    assert isinstance(body, dict)
    assert body["message"] == "Not Found"


async def test_override_records_and_resets(fake_github: FakeGitHub) -> None:
    fake_github.respond(
        "GET", "/repos/{owner}/{repo}/pulls/{number}", {"message": "x"}, status=500, times=1
    )
    fake_github.respond("GET", "/repos/octo/other/issues", [])

    assert (await get(fake_github.url + "/repos/octo/hello/pulls/1"))[0] == 500
    assert (await get(fake_github.url + "/repos/octo/hello/pulls/1"))[0] == 200  # times=1 used up
    assert await get(fake_github.url + "/repos/octo/other/issues") == (200, [])
    assert (await get(fake_github.url + "/repos/octo/hello/issues"))[1] != []

    assert len(fake_github.calls("GET", "/repos/{owner}/{repo}/pulls/{number}")) == 2
    assert [c.path for c in fake_github.calls(path="/repos/octo/other/issues")] == [
        "/repos/octo/other/issues"
    ]
    fake_github.reset()
    assert fake_github.requests == []
    assert (await get(fake_github.url + "/repos/octo/other/issues"))[1] != []


async def test_custom_handler_sees_the_request(fake_github: FakeGitHub) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"q": dict(request.query)})

    fake_github.handle("POST", "/app/installations/{id}/access_tokens", echo)
    async with aiohttp.ClientSession() as http:
        url = fake_github.url + "/app/installations/9/access_tokens?a=1"
        async with http.post(url, json={"repositories": ["hello"]}) as response:
            assert response.status == 200
            assert (await response.json())["q"] == {"a": "1"}
    (call,) = fake_github.calls("POST")
    assert call.json() == {"repositories": ["hello"]}
    assert call.query == {"a": "1"}


async def test_sign_in_through_the_authorize_page(fake_github: FakeGitHub) -> None:
    env = fake_github.oauth_environment()
    async with httpx.AsyncClient(base_url=fake_github.url) as http:
        page = await http.get(
            "/login/oauth/authorize",
            params={
                "client_id": env["POLAR_GITHUB_CLIENT_ID"],
                "redirect_uri": "http://app.example/callback",
                "state": "s1",
            },
        )
        assert page.status_code == 200
        link = re.search(r'id="as-Codertocat" href="([^"]+)"', page.text)
        assert link is not None
        callback = httpx.URL(html.unescape(link.group(1)))
        assert callback.host == "app.example"
        assert callback.params["state"] == "s1"

        exchanged = await http.post(
            "/login/oauth/access_token",
            data={
                "client_id": env["POLAR_GITHUB_CLIENT_ID"],
                "client_secret": env["POLAR_GITHUB_CLIENT_SECRET"],
                "code": callback.params["code"],
            },
            headers={"Accept": "application/json"},
        )
        token = exchanged.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/user", headers=headers)).json()["login"] == "Codertocat"
        emails = (await http.get("/user/emails", headers=headers)).json()
        assert emails[0]["verified"] is True
        installations = (await http.get("/user/installations", headers=headers)).json()
        assert [i["id"] for i in installations["installations"]] == [957387]

        # A code is good once.
        again = await http.post(
            "/login/oauth/access_token",
            data={
                "client_secret": env["POLAR_GITHUB_CLIENT_SECRET"],
                "code": callback.params["code"],
            },
        )
        assert again.json() == {"error": "bad_verification_code"}


def test_the_fake_app_has_a_usable_private_key(fake_github: FakeGitHub) -> None:
    key = fake_github.oauth_environment()["POLAR_GITHUB_APP_PRIVATE_KEY"]
    token = jwt.encode({"iss": "1"}, key, algorithm="RS256")
    assert token.count(".") == 2
