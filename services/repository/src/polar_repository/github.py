"""GitHub as the GitHub App installation sees it: listing a repository's issues and pulls.

Authentication is githubkit's AppInstallationAuthStrategy: a JWT signed (RS256) with the App's
private key is exchanged at POST /app/installations/{id}/access_tokens for an installation
token, which githubkit caches until a minute before GitHub says it expires. The cache belongs
to one GitHubApp (per process), so every sync of an installation shares one token.

A 401 answer to a request made with a cached token (revoked early, e.g. by a reinstall) drops
that token and asks once more with a fresh one; only a second refusal is AccessRevoked.

Rate limits are ours to honour, not githubkit's (its auto retry is off): on 403/429 with
`x-ratelimit-remaining: 0` we wait for `x-ratelimit-reset` (or `retry-after`), at most
`max_wait` seconds, then ask for the same page again; and when few requests are left we
spread them over the time to the reset rather than burn them and stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
import structlog
from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.auth.app import AppAuth
from githubkit.cache import MemCacheStrategy
from githubkit.cache.mem_cache import MemCache
from githubkit.exception import RequestError, RequestFailed
from githubkit.response import Response
from polar_kit import tracing

from . import metrics
from .settings import RepositorySettings

log = structlog.get_logger(__name__)

PER_PAGE = 100  # GitHub's maximum for issues and pulls
Sleep = Callable[[float], Awaitable[None]]
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class GitHubError(Exception):
    """GitHub refused or failed a request in a way retrying now will not fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubGone(GitHubError):
    """404/410: the repository (or its issues) is gone or no longer visible to the App."""


class GitHubUnavailable(GitHubError):
    """5xx answers or network failures, still after the retries: try again later."""


class AccessRevoked(GitHubError):
    """The installation's token is refused even fresh, or none is issued any more (the App
    was uninstalled or suspended, or lost the permission)."""


class RateLimited(GitHubError):
    """The rate limit resets later than we are willing to wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"GitHub rate limit: reset in {wait:.0f}s, beyond the allowed wait", 403)
        self.wait = wait


@dataclass(frozen=True)
class RateLimitPolicy:
    max_wait: float = 900.0  # longest single wait for a reset; beyond it the sync gives up
    low_remaining: int = 50  # below this many requests left, pace the rest until the reset
    max_rate_limited: int = 10  # consecutive rate-limited answers to one request before giving up


@dataclass(frozen=True)
class Page:
    """One page of a listing. `last_page` comes from the Link header's rel="last" (GitHub
    omits it on the last page itself)."""

    items: list[dict[str, Any]]
    number: int
    has_next: bool
    last_page: int | None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def rate_limit_wait(
    status: int, headers: Mapping[str, str], message: str, now: float
) -> float | None:
    """Seconds to wait before retrying a 403/429, or None if it is not a rate limit."""
    if status not in (403, 429):
        return None
    retry_after = _int_header(headers, "retry-after")
    if retry_after is not None:
        return float(max(retry_after, 1))
    if _int_header(headers, "x-ratelimit-remaining") == 0:
        reset = _int_header(headers, "x-ratelimit-reset")
        # +1 s: the reset is whole epoch seconds and clocks drift a little.
        return max(reset - now, 0.0) + 1.0 if reset is not None else 60.0
    if "secondary rate limit" in message.lower() or status == 429:
        return 60.0  # GitHub's documented minimum wait when it gives no header
    return None


def pacing_delay(headers: Mapping[str, str], policy: RateLimitPolicy, now: float) -> float:
    """After a success: when few requests are left, spread them evenly up to the reset."""
    remaining = _int_header(headers, "x-ratelimit-remaining")
    reset = _int_header(headers, "x-ratelimit-reset")
    if remaining is None or reset is None or remaining >= policy.low_remaining:
        return 0.0
    return min(max(reset - now, 0.0) / max(remaining, 1), policy.max_wait)


def _error_message(response: Response[Any]) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _page_number(url: str | None) -> int | None:
    if url is None:
        return None
    try:
        return int(httpx.URL(url).params["page"])
    except (KeyError, ValueError):
        return None


class _Tokens(MemCache):
    """What githubkit caches (the App's JWT, installation tokens), with expiry, and a way to
    forget an installation's token (githubkit's MemCache has none)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._items: dict[str, tuple[str, datetime]] = {}

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[1] < datetime.now(UTC):
            self._items.pop(key, None)
            return None
        return item[0]

    def set(self, key: str, value: str, ex: timedelta) -> None:
        self._items[key] = (value, datetime.now(UTC) + ex)

    async def aget(self, key: str) -> str | None:
        return self.get(key)

    async def aset(self, key: str, value: str, ex: timedelta) -> None:
        self.set(key, value, ex)

    def forget(self, prefix: str) -> None:
        for key in [k for k in self._items if k.startswith(prefix)]:
            del self._items[key]


class TokenCache(MemCacheStrategy):
    """githubkit's in-memory strategy with our token store."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = _Tokens()

    def get_cache_storage(self) -> _Tokens:
        return self.tokens

    async def get_async_cache_storage(self) -> _Tokens:
        return self.tokens

    def forget_installation(self, issuer: str, installation_id: int) -> None:
        # The key layout is githubkit's public AppAuth.INSTALLATION_CACHE_KEY.
        prefix = AppAuth.INSTALLATION_CACHE_KEY.split("{permissions}")[0]
        self.tokens.forget(prefix.format(issuer=issuer, installation_id=installation_id))


@dataclass
class GitHubApp:
    """The GitHub App: one per process; `installation(id)` opens a client for one installation."""

    base_url: str
    app_id: str
    private_key: str
    timeout: float = 30.0
    policy: RateLimitPolicy = field(default_factory=RateLimitPolicy)
    retries: int = 3  # for 5xx answers and network errors, with exponential backoff
    _cache: TokenCache = field(default_factory=TokenCache, repr=False)

    @classmethod
    def from_settings(cls, settings: RepositorySettings) -> GitHubApp:
        return cls(
            settings.github_api_url,
            settings.github_app_id,
            settings.github_private_key(),
            timeout=settings.github_timeout_seconds,
            policy=RateLimitPolicy(
                max_wait=settings.github_rate_limit_max_wait_seconds,
                low_remaining=settings.github_rate_limit_low_remaining,
            ),
        )

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.private_key)

    def forget_token(self, installation_id: int) -> None:
        """Drops the cached token of an installation: the next request fetches a new one."""
        self._cache.forget_installation(self.app_id, installation_id)

    def installation(
        self, installation_id: int, *, sleep: Sleep = asyncio.sleep
    ) -> InstallationClient:
        """`sleep` waits out rate limits and backoffs; the sync passes one that stops early
        on shutdown."""
        auth = AppInstallationAuthStrategy(self.app_id, self.private_key, installation_id)
        github = GitHub(
            auth,
            base_url=self.base_url,
            timeout=self.timeout,
            cache_strategy=self._cache,
            http_cache=False,  # always fresh pages; only the token is cached
            auto_retry=False,  # rate limits and retries are handled below
        )
        return InstallationClient(self, github, installation_id, sleep)


class InstallationClient:
    def __init__(
        self, app: GitHubApp, github: GitHub[Any], installation_id: int, sleep: Sleep
    ) -> None:
        self._app = app
        self._github = github
        self._installation_id = installation_id
        self._sleep = sleep
        self._origin = httpx.URL(app.base_url)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> InstallationClient:
        # One HTTP connection pool for the whole sync (githubkit keeps it in a ContextVar, so
        # enter and use the client in the same task).
        await self._stack.enter_async_context(self._github)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def issues(
        self, owner: str, repo: str, *, since: str | None = None, page: int = 1
    ) -> AsyncIterator[Page]:
        """Every issue of every state (updated since `since`, ISO 8601, if given), from
        `page` on; GitHub includes pull requests here (with `pull_request`)."""
        params: dict[str, Any] = {
            "state": "all",
            "per_page": PER_PAGE,
            "sort": "created",
            "direction": "asc",
        }
        if since is not None:
            params["since"] = since
        return self.paginate(f"/repos/{owner}/{repo}/issues", params, page)

    def pulls(
        self, owner: str, repo: str, *, recently_updated: bool = False, page: int = 1
    ) -> AsyncIterator[Page]:
        """Every pull request, oldest first; or most recently updated first (the listing
        has no `since`: the caller stops when it reaches what it has)."""
        order = ("updated", "desc") if recently_updated else ("created", "asc")
        params = {"state": "all", "per_page": PER_PAGE, "sort": order[0], "direction": order[1]}
        return self.paginate(f"/repos/{owner}/{repo}/pulls", params, page)

    async def pull_request(self, owner: str, repo: str, number: int) -> dict[str, Any] | None:
        """The full pull request object (the listing lacks commits, additions, comments...);
        None if GitHub no longer has it."""
        try:
            response = await self.get(f"/repos/{owner}/{repo}/pulls/{number}")
        except GitHubGone:
            return None
        found = response.json()
        return found if isinstance(found, dict) else None

    async def paginate(
        self, path: str, params: Mapping[str, Any], page: int = 1
    ) -> AsyncIterator[Page]:
        """Follows the Link header's rel="next" until there is none, from `page` on."""
        url: str = path
        query: Mapping[str, Any] | None = {**params, "page": page} if page > 1 else params
        number = page
        while True:
            response = await self.get(url, query)
            items = response.json()
            if not isinstance(items, list):
                raise GitHubError(f"GET {url}: expected a list, got {type(items).__name__}")
            links = response.raw_response.links
            next_url = links.get("next", {}).get("url")
            last = _page_number(links.get("last", {}).get("url"))
            yield Page(items, number, next_url is not None, last)
            if next_url is None:
                return
            self._check_origin(next_url)
            url, query, number = next_url, None, number + 1  # the next URL carries the query

    def _check_origin(self, url: str) -> None:
        # The installation token goes with every request: never to another host.
        target = httpx.URL(url)
        if (target.scheme, target.host, target.port) != (
            self._origin.scheme,
            self._origin.host,
            self._origin.port,
        ):
            raise GitHubError(f"refusing to follow a Link to another origin: {url}")

    async def get(self, url: str, params: Mapping[str, Any] | None = None) -> Response[Any]:
        """GET with rate-limit waits and retries of transient failures; raises GitHubError."""
        failures = rate_limited = 0
        fresh_token = False
        while True:
            try:
                response = await self._github.arequest("GET", url, params=params)
            except RequestError as e:
                # githubkit wraps what the auth flow raises (the token request) in RequestError.
                failed = e if isinstance(e, RequestFailed) else e.exc
                if not isinstance(failed, RequestFailed) or failed.response.status_code in (
                    RETRYABLE_STATUS
                ):
                    failures += 1
                    reason = (
                        str(failed.response.status_code)
                        if isinstance(failed, RequestFailed)
                        else type(e.exc).__name__
                    )
                    if failures > self._app.retries:
                        raise GitHubUnavailable(f"GET {url}: GitHub failed: {reason}") from e
                    await self._backoff(url, failures, reason)
                    continue
                status = failed.response.status_code
                if failed.response.raw_request.url.path.endswith("/access_tokens"):
                    # No token for this installation any more.
                    message = _error_message(failed.response)
                    raise AccessRevoked(
                        f"GitHub refused an installation token ({status}): {message}", status
                    ) from e
                if status == 401:
                    if fresh_token:
                        raise AccessRevoked(
                            f"GET {url}: GitHub refused a fresh installation token (401)", 401
                        ) from e
                    # A cached token revoked before its expiry: forget it, ask for a new one.
                    log.warning("github token refused, fetching a new one", request=url)
                    self._app.forget_token(self._installation_id)
                    fresh_token = True
                    continue
                rate_limited += 1
                await self._wait_for_rate_limit(failed.response, rate_limited)
                continue
            await self._pace(response)
            return response

    async def _wait_for_rate_limit(self, response: Response[Any], attempt: int) -> None:
        """Waits as a 4xx answer asks, or raises when it is not a rate limit or waiting will
        not help."""
        status = response.status_code
        metrics.rate_limit_seen(response.headers)
        what = f"{response.raw_request.method} {response.raw_request.url.path}"
        message = _error_message(response)
        wait = rate_limit_wait(status, response.headers, message, time.time())
        if wait is None:
            # 403 without a rate limit: "Resource not accessible by integration".
            cls = {404: GitHubGone, 410: GitHubGone, 403: AccessRevoked}.get(status, GitHubError)
            raise cls(f"{what}: GitHub answered {status}: {message}", status)
        if wait > self._app.policy.max_wait or attempt > self._app.policy.max_rate_limited:
            raise RateLimited(wait)
        log.warning("github rate limited, waiting", request=what, status=status, wait=wait)
        metrics.WAITS["rate_limited"].observe(wait)
        with tracing.span("github rate-limit wait", seconds=wait, status=status):
            await self._sleep(wait)

    async def _backoff(self, what: str, attempt: int, reason: str) -> None:
        delay = min(2.0 ** (attempt - 1), 30.0)
        log.warning("github request failed, retrying", request=what, reason=reason, delay=delay)
        metrics.WAITS["backoff"].observe(delay)
        with tracing.span("github retry wait", seconds=delay, reason=reason):
            await self._sleep(delay)

    async def _pace(self, response: Response[Any]) -> None:
        metrics.rate_limit_seen(response.headers)
        delay = pacing_delay(response.headers, self._app.policy, time.time())
        if delay > 0:
            metrics.WAITS["pacing"].observe(delay)
            log.info(
                "github rate limit low, pacing",
                remaining=response.headers.get("x-ratelimit-remaining"),
                delay=round(delay, 2),
            )
            with tracing.span("github rate-limit pacing", seconds=delay):
                await self._sleep(delay)
