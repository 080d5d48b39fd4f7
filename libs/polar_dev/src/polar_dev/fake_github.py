"""A local stand-in for api.github.com serving recorded REST responses.

By default each known endpoint answers with its recorded example from
`<fixtures>/rest/<group>/<operation>.json`. Tests can override a route's answer
(`respond`), answer with their own handler (`handle`) and look at what was asked (`requests`).
Paths in `respond`/`handle` are either concrete (`/repos/octo/hello/issues`) or patterns
(`/repos/{owner}/{repo}/issues`); the most recent matching override wins.

Standalone: `python -m polar_dev.fake_github [--port N]` prints its URL and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
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


@dataclass
class FakeGitHub:
    fixtures: Path  # the fixtures/github folder (holding rest/)
    requests: list[RecordedRequest] = field(default_factory=list)
    _overrides: list[_Override] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

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
    try:
        await asyncio.Event().wait()
    finally:
        await github.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m polar_dev.fake_github")
    parser.add_argument("--port", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args().port))
