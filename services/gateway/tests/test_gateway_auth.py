"""Sign in with GitHub through the fake GitHub, session tokens as cookie and bearer, logout."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from gateway_support import (
    CLIENT_ID,
    SESSION_COOKIE,
    GitHubWorld,
    SignIn,
    StartGateway,
    oauth_sign_in,
)
from polar_dev.fake_github import FakeGitHub
from polar_gateway.sessions import TokenSigner
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway
from polar_gateway.token import main as token_main

AUTHORIZE = "/api/v2/integrations/github/authorize"
CALLBACK = "/api/v2/integrations/github/callback"


async def test_authorize_redirects_to_github_with_a_signed_state(
    client: httpx.AsyncClient, github: FakeGitHub
) -> None:
    response = await client.get(AUTHORIZE, params={"return_to": "/dashboard"})
    assert response.status_code == 307
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{github.url}/login/oauth/authorize"
    )
    query = parse_qs(location.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["http://testserver.local/api/v2/integrations/github/callback"]
    assert query["state"][0]
    cookie = response.headers["set-cookie"]
    assert "polar_oauth_state=" in cookie
    assert "httponly" in cookie.lower()


async def test_sign_in_sets_a_session_cookie_and_returns_to_the_page(
    gateway: RunningGateway, github: FakeGitHub, world: GitHubWorld
) -> None:
    user = world.new_user()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await oauth_sign_in(http, user)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/x"
        cookie = next(c for c in response.headers.get_list("set-cookie") if "polar=" in c)
        assert "httponly" in cookie.lower()
        me = await http.get("/api/v2/users/me")
    assert me.status_code == 200
    body = me.json()
    assert body["username"] == user.login
    assert body["email"] == user.email
    assert body["email_verified"] is True
    # The code was exchanged with the App's credentials.
    [exchange] = github.calls("POST", "/login/oauth/access_token")
    assert b"client_secret=test-client-secret" in exchange.body


async def test_signing_in_again_is_the_same_user(
    gateway: RunningGateway, github: FakeGitHub, world: GitHubWorld
) -> None:
    user = world.new_user()
    ids = []
    for _ in range(2):
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            assert (await oauth_sign_in(http, user)).status_code == 303
            ids.append((await http.get("/api/v2/users/me")).json()["id"])
    assert ids[0] == ids[1]


async def test_the_session_token_works_as_a_bearer_token(
    client: httpx.AsyncClient, sign_in: SignIn
) -> None:
    member = await sign_in()
    response = await client.get("/api/v2/users/me", headers=member.headers)
    assert response.status_code == 200
    assert response.json()["id"] == member.user_id


async def test_callback_refuses_a_state_that_does_not_match(
    client: httpx.AsyncClient, github: FakeGitHub, world: GitHubWorld
) -> None:
    user = world.new_user()
    assert (await client.get(AUTHORIZE)).status_code == 307  # state cookie set
    response = await client.get(CALLBACK, params={"code": user.code, "state": "forged"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_state"
    assert SESSION_COOKIE not in client.cookies
    assert not github.calls("POST", "/login/oauth/access_token")  # the code was not used


async def test_callback_refuses_a_missing_or_tampered_state_cookie(
    gateway: RunningGateway, github: FakeGitHub, world: GitHubWorld
) -> None:
    user = world.new_user()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.get(CALLBACK, params={"code": user.code, "state": "s"})
        assert response.status_code == 400
        authorize = await http.get(AUTHORIZE)
        state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
        forged = jwt.encode(
            {"typ": "oauth_state", "state": state, "iss": "polar-gateway", "iat": 0, "exp": 2**40},
            "not-the-secret-of-this-gateway-at-all",
        )
        http.cookies.set("polar_oauth_state", forged)
        response = await http.get(CALLBACK, params={"code": user.code, "state": state})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_state"


async def test_callback_with_a_code_github_refuses_is_401(
    client: httpx.AsyncClient, github: FakeGitHub
) -> None:
    authorize = await client.get(AUTHORIZE)
    state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
    response = await client.get(CALLBACK, params={"code": "wrong", "state": state})
    assert response.status_code == 401
    assert "bad code" in response.json()["error"]["message"]


async def test_callback_when_the_user_denies_access_is_401(
    client: httpx.AsyncClient, github: FakeGitHub
) -> None:
    authorize = await client.get(AUTHORIZE)
    state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
    response = await client.get(CALLBACK, params={"error": "access_denied", "state": state})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "access_denied"


async def test_return_to_never_leaves_the_site(
    gateway: RunningGateway, github: FakeGitHub, world: GitHubWorld
) -> None:
    user = world.new_user()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        authorize = await http.get(AUTHORIZE, params={"return_to": "//evil.example/x"})
        state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
        response = await http.get(CALLBACK, params={"code": user.code, "state": state})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_logout_revokes_the_token_and_clears_the_cookie(
    gateway: RunningGateway, sign_in: SignIn
) -> None:
    member = await sign_in()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        http.cookies.set(SESSION_COOKIE, member.token)
        response = await http.post("/api/v2/auth/logout")
        assert response.status_code == 204
        assert 'polar=""' in response.headers["set-cookie"]
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.get("/api/v2/users/me", headers=member.headers)
    assert response.status_code == 401
    assert "signed out" in response.json()["error"]["message"]


async def test_a_revocation_reaches_every_gateway(
    gateway: RunningGateway, sign_in: SignIn, start_gateway: StartGateway
) -> None:
    starter = start_gateway
    member = await sign_in()
    async with starter() as other, httpx.AsyncClient(base_url=other.url) as http:
        assert (await http.get("/api/v2/users/me", headers=member.headers)).status_code == 200
        async with httpx.AsyncClient(base_url=gateway.url) as first:
            assert (
                await first.post("/api/v2/auth/logout", headers=member.headers)
            ).status_code == 204
        deadline = time.monotonic() + 5
        while True:
            status = (await http.get("/api/v2/users/me", headers=member.headers)).status_code
            if status == 401 or time.monotonic() > deadline:
                break
        assert status == 401


async def test_bad_tokens_are_401_with_one_error_shape(client: httpx.AsyncClient) -> None:
    for headers in (
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ):
        response = await client.get("/api/v2/users/me", headers=headers)
        assert response.status_code == 401, headers
        error = response.json()["error"]
        assert error["code"] == "unauthenticated"
        assert error["request_id"] == response.headers["x-request-id"]
    client.cookies.set(SESSION_COOKIE, "garbage")
    assert (await client.get("/api/v2/users/me")).status_code == 401


async def test_an_expired_token_is_401(
    client: httpx.AsyncClient, gateway_settings: GatewaySettings, sign_in: SignIn
) -> None:
    member = await sign_in()
    signer = TokenSigner(gateway_settings)
    expired = signer.sign({"typ": "session", "sub": member.user_id, "sid": "x"}, ttl=-10)
    response = await client.get("/api/v2/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401


async def test_the_state_token_is_not_a_session_token(
    client: httpx.AsyncClient, gateway_settings: GatewaySettings, sign_in: SignIn
) -> None:
    member = await sign_in()
    state = TokenSigner(gateway_settings).sign(
        {"typ": "oauth_state", "sub": member.user_id, "sid": "x"}, ttl=60
    )
    response = await client.get("/api/v2/users/me", headers={"Authorization": f"Bearer {state}"})
    assert response.status_code == 401


async def test_token_command_mints_a_working_token(
    client: httpx.AsyncClient,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    member = await sign_in()
    monkeypatch.setenv("POLAR_SESSION_SECRET", gateway_settings.session_secret.get_secret_value())
    assert token_main([member.user_id, "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    response = await client.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert token_main(["not-a-uuid"]) == 2
