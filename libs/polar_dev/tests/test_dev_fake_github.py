import json
from pathlib import Path

import aiohttp
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
