"""A local stand-in for api.github.com serving recorded REST responses.

By default each known endpoint answers with its recorded example from
`<fixtures>/rest/<group>/<operation>.json`. Tests can override a route's answer
(`respond`), answer with their own handler (`handle`) and look at what was asked (`requests`).
Paths in `respond`/`handle` are either concrete (`/repos/octo/hello/issues`) or patterns
(`/repos/{owner}/{repo}/issues`); the most recent matching override wins.

It also plays github.com for sign-in (`oauth_*`): an authorize page a person can click
through (as `octocat`, the REST examples' user, or `Codertocat`, who installs the app in the
recorded webhooks), the code exchange, and `/user`, `/user/emails`, `/user/installations` for
the token it handed out. And it is a GitHub App: `app_id` and `app_private_key` are what the
repository service's sync signs its JWT with (the fake does not check the JWT).

Standalone: `python -m polar_dev.fake_github [--port N]` prints its URL and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import html
import json
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # pattern, `{name}` matches one path segment
    fixture: str  # relative to <fixtures>/rest
    status: int = 200


ROUTES: tuple[Route, ...] = (
    Route("GET", "/user/installations", "apps/list-installations-for-authenticated-user.json"),
    Route("GET", "/app/installations/{installation_id}", "apps/get-installation.json"),
    Route(
        "POST",
        "/app/installations/{installation_id}/access_tokens",
        "apps/create-installation-access-token.json",
        201,
    ),
    Route("GET", "/user", "users/get-authenticated.json"),
    Route("GET", "/installation/repositories", "apps/list-repos-accessible-to-installation.json"),
    Route("GET", "/repos/{owner}/{repo}/issues", "issues/list-for-repo.json"),
    Route("GET", "/repos/{owner}/{repo}/pulls", "pulls/list.json"),
    Route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "pulls/get.json"),
)


# The OAuth app the gateway is configured with under `make dev --fake-github`.
OAUTH_CLIENT_ID = "Iv1.fakegithubclient"
OAUTH_CLIENT_SECRET = "fake-github-client-secret-for-local-development"
APP_ID = "1"


@functools.cache
def app_private_key() -> str:
    """A fresh RSA key per process: the fake App's private key (PEM), never written anywhere."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _compile(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", path)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"{regex}/?")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Override:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    times: int | None  # None: until reset


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`body` as GitHub sends it: bytes/str as is, anything else JSON-encoded."""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    response = web.Response(body=body, status=status, headers=headers)
    if "Content-Type" not in response.headers:
        response.headers["Content-Type"] = JSON_TYPE
    return response


def not_found() -> web.Response:
    return json_response(
        {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404
    )


AUTHORIZE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in to the fake GitHub</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Fake GitHub (local development)</h1>
<p>An application asks to sign you in (scope: <code>{scope}</code>). Choose who you are:</p>
<ul>{choices}</ul>
<p><small>Served by polar_dev.fake_github; nothing leaves this machine.</small></p>
</body></html>
"""


@dataclass
class FakeGitHub:
    fixtures: Path  # the fixtures/github folder (holding rest/)
    requests: list[RecordedRequest] = field(default_factory=list)
    _overrides: list[_Override] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""
    _codes: dict[str, str] = field(default_factory=dict)  # OAuth code -> login
    _tokens: dict[str, str] = field(default_factory=dict)  # access token -> login

    # -- accounts -----------------------------------------------------------------------------

    @functools.cached_property
    def accounts(self) -> dict[str, dict[str, Any]]:
        """Who can sign in: the REST examples' user and the recorded webhooks' installer."""
        octocat = self.fixture("users/get-authenticated")
        installed = json.loads(
            (self.fixtures / "webhooks/installation/created.payload.json").read_text()
        )
        codertocat = {
            **installed["sender"],
            "name": "Codertocat",
            "email": "codertocat@example.com",
        }
        return {
            octocat["login"]: {"user": octocat, "installations": [], "email": octocat["email"]},
            codertocat["login"]: {
                "user": codertocat,
                "installations": [installed["installation"]],
                "email": codertocat["email"],
            },
        }

    def oauth_environment(self) -> dict[str, str]:
        """POLAR_* settings pointing the gateway's sign-in and the sync at this fake."""
        return {
            "POLAR_GITHUB_API_URL": self.url,
            "POLAR_GITHUB_AUTHORIZE_URL": f"{self.url}/login/oauth/authorize",
            "POLAR_GITHUB_TOKEN_URL": f"{self.url}/login/oauth/access_token",
            "POLAR_GITHUB_CLIENT_ID": OAUTH_CLIENT_ID,
            "POLAR_GITHUB_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
            "POLAR_GITHUB_APP_ID": APP_ID,
            "POLAR_GITHUB_APP_PRIVATE_KEY": app_private_key(),
        }

    async def _authorize(self, request: web.Request) -> web.Response:
        redirect_uri = request.query.get("redirect_uri", "")
        if request.query.get("client_id") != OAUTH_CLIENT_ID or not redirect_uri:
            return web.Response(status=400, text="unknown client_id or no redirect_uri")
        choices = []
        for login in self.accounts:
            code = secrets.token_urlsafe(16)
            self._codes[code] = login
            query = urllib.parse.urlencode({"code": code, "state": request.query.get("state", "")})
            separator = "&" if "?" in redirect_uri else "?"
            href = html.escape(f"{redirect_uri}{separator}{query}")
            choices.append(f'<li><a id="as-{login}" href="{href}">Sign in as {login}</a></li>')
        page = AUTHORIZE_PAGE.format(
            scope=html.escape(request.query.get("scope", "")), choices="".join(choices)
        )
        return web.Response(text=page, content_type="text/html")

    async def _access_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post()) if request.content_type != "application/json" else {}
        if request.content_type == "application/json":
            form = await request.json()
        login = self._codes.pop(str(form.get("code", "")), None)
        if form.get("client_secret") != OAUTH_CLIENT_SECRET or login is None:
            # GitHub answers 200 with an error body for a bad code.
            return json_response({"error": "bad_verification_code"})
        token = "gho_fake" + secrets.token_hex(16)
        self._tokens[token] = login
        return json_response({"access_token": token, "token_type": "bearer", "scope": "user:email"})

    def _signed_in(self, request: web.Request) -> dict[str, Any] | None:
        auth = request.headers.get("Authorization", "")
        login = self._tokens.get(auth.split(" ", 1)[-1].strip())
        return self.accounts[login] if login else None

    async def _oauth_user_api(self, request: web.Request) -> web.StreamResponse | None:
        """`/user`, `/user/emails`, `/user/installations` for a token this fake issued."""
        account = self._signed_in(request)
        if account is None or request.method != "GET":
            return None
        if request.path == "/user":
            return json_response(account["user"])
        if request.path == "/user/emails":
            email = {"email": account["email"], "primary": True, "verified": True}
            return json_response([{**email, "visibility": "public"}])
        if request.path == "/user/installations":
            found = account["installations"]
            return json_response({"total_count": len(found), "installations": found})
        return None

    # -- test API -----------------------------------------------------------------------------

    def respond(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer `method path` with `body`/`status` (the next `times` requests, or until reset)."""

        async def handler(request: web.Request) -> web.Response:
            return json_response(body if body is not None else b"", status, headers)

        self.handle(method, path, handler, times=times)

    def handle(self, method: str, path: str, handler: Handler, *, times: int | None = None) -> None:
        """Answer `method path` with `handler(request)`."""
        self._overrides.append(_Override(method.upper(), _compile(path), handler, times))

    def fixture(self, name: str) -> Any:
        """A recorded response, e.g. `fixture("pulls/get")`, to tweak and pass to `respond`."""
        return json.loads((self.fixtures / "rest" / f"{name}.json").read_text())

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only those matching `method` and `path` (a pattern)."""
        pattern = _compile(path) if path else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (pattern is None or pattern.fullmatch(r.path))
        ]

    def reset(self) -> None:
        """Forgets overrides and recorded requests (`fake_github` does so after each test)."""
        self._overrides.clear()
        self.requests.clear()

    # -- server -------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), dict(request.headers), body
            )
        )
        for override in reversed(self._overrides):
            if override.method == request.method and override.pattern.fullmatch(request.path):
                if override.times is not None:
                    override.times -= 1
                    if override.times <= 0:
                        self._overrides.remove(override)
                return await override.handler(request)
        if request.path == "/login/oauth/authorize" and request.method == "GET":
            return await self._authorize(request)
        if request.path == "/login/oauth/access_token" and request.method == "POST":
            return await self._access_token(request)
        if (answer := await self._oauth_user_api(request)) is not None:
            return answer
        for route in ROUTES:
            if route.method == request.method and _compile(route.path).fullmatch(request.path):
                return json_response(
                    (self.fixtures / "rest" / route.fixture).read_bytes(), route.status
                )
        return not_found()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _serve(port: int) -> None:
    from .paths import github_fixtures_dir

    github = FakeGitHub(github_fixtures_dir())
    print(f"fake GitHub API at {await github.start(port=port)}", flush=True)
    for key, value in github.oauth_environment().items():
        if key != "POLAR_GITHUB_APP_PRIVATE_KEY":
            print(f"{key}={value}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await github.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m polar_dev.fake_github")
    parser.add_argument("--port", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args().port))
