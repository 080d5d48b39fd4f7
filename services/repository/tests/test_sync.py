"""The GitHub sync against the fake GitHub and real PostgreSQL: paging, rate limits, the
advisory lock across replicas, events in the outbox, shutdown.

Every test generates a throwaway RSA key for the GitHub App; the fake GitHub checks the JWT
signed with it before handing out an installation token.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import jwt
import pytest
import sqlalchemy as sa
import structlog
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext
from opentelemetry.sdk.trace import ReadableSpan
from polar.repository.v1 import events_pb2, repository_pb2, sync_pb2
from polar.repository.v1 import repository_service_pb2 as pb
from polar_db.engine import asyncpg_dsn, create_engine, create_sessionmaker
from polar_db.models import (
    Issue,
    OutboxEvent,
    PullRequest,
    Repository,
    SyncJob,
)
from polar_db.models.repository import KnownOrganization as Organization
from polar_dev.fake_github import FakeGitHub, json_response
from polar_kit import testing
from polar_kit.consumer import Delivery, Reject
from polar_kit.testing import eventually
from polar_repository import events, ingest, service, sync_jobs
from polar_repository.consumers import on_webhooks
from polar_repository.github import (
    GitHubApp,
    GitHubError,
    RateLimitPolicy,
    pacing_delay,
    rate_limit_wait,
)
from polar_repository.metrics import SyncActivity
from polar_repository.refresh import Refresher
from polar_repository.sync import SyncNotConfigured, SyncRunner, on_repository_created
from polar_repository.sync_locks import lock_key
from polar_repository.sync_progress import RetryPolicy
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

APP_ID = "424242"
TOKEN = "ghs_syncTestToken"
MakeRepo = Callable[..., Awaitable[Repository]]  # conftest's make_repo
MakeOrg = Callable[..., Awaitable[Organization]]  # conftest's make_org
_ids = itertools.count(40_000_000, 10_000)  # GitHub ids: a block per listing, never reused


# --- the GitHub App and the fake GitHub ------------------------------------------------------


# The installation token the fake hands out, and those its listings accept (a test revokes
# one by changing these).
TOKENS: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def tokens() -> dict[str, Any]:
    TOKENS.clear()
    TOKENS.update(issued=TOKEN, accepted={TOKEN})
    return TOKENS


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def token_requests(fake_github: FakeGitHub, app_key: rsa.RSAPrivateKey) -> list[dict[str, Any]]:
    """Serves installation tokens to a JWT signed with the App's key; returns its claims."""
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, app_key.public_key(), algorithms=["RS256"])
        except jwt.PyJWTError as e:
            return json_response({"message": f"bad JWT: {e}"}, 401)
        if scheme != "Bearer" or claims.get("iss") != APP_ID:
            return json_response({"message": "bad issuer"}, 401)
        seen.append(claims | {"installation": request.match_info.get("tail", request.path)})
        expires = datetime.now(UTC) + timedelta(hours=1)
        body = {"token": TOKENS["issued"], "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return json_response(body, 201)

    fake_github.handle("POST", "/app/installations/{id}/access_tokens", handler)
    return seen


@pytest.fixture
def github_app(
    fake_github: FakeGitHub, app_key: rsa.RSAPrivateKey, token_requests: list[dict[str, Any]]
) -> GitHubApp:
    pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return GitHubApp(fake_github.url, APP_ID, pem, policy=RateLimitPolicy(max_wait=10))


Gate = Callable[[web.Request, int], Awaitable[web.StreamResponse | None]]


def serve_listing(
    fake: FakeGitHub,
    path: str,
    items: list[dict[str, Any]],
    *,
    per_page: int | None = None,
    gate: Gate | None = None,
) -> None:
    """Serves `items` at `path` in pages as GitHub does: `page`/`per_page` query parameters
    and a Link header (next/last/first/prev). `gate(request, page)` may answer instead."""

    async def handler(request: web.Request) -> web.StreamResponse:
        accepted = {f"token {t}" for t in TOKENS.get("accepted", {TOKEN})}
        if request.headers.get("Authorization") not in accepted:
            return json_response({"message": "Bad credentials"}, 401)
        page = int(request.query.get("page", "1"))
        if gate is not None and (early := await gate(request, page)) is not None:
            return early
        size = per_page or int(request.query.get("per_page", "30"))
        last = max(1, math.ceil(len(items) / size))

        def link(number: int, rel: str) -> str:
            return f'<{request.url.update_query(page=number)}>; rel="{rel}"'

        links = [link(page + 1, "next"), link(last, "last")] if page < last else []
        links += [link(1, "first"), link(page - 1, "prev")] if page > 1 else []
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
        }
        if links:
            headers["Link"] = ", ".join(links)
        return json_response(items[(page - 1) * size : page * size], headers=headers)

    fake.handle("GET", path, handler)


def issue_items(fake: FakeGitHub, count: int, *, pull_requests: int = 0) -> list[dict[str, Any]]:
    """`count` issues made from the recorded one (distinct ids and numbers), then
    `pull_requests` pull requests as GitHub lists them among issues."""
    recorded = fake.fixture("issues/list-for-repo")[0]
    base = next(_ids)
    items = []
    for n in range(1, count + pull_requests + 1):
        item = copy.deepcopy(recorded)
        item.update(id=base + n, number=n, title=f"issue {n}", node_id=f"I_{base + n}")
        if n <= count:
            del item["pull_request"]  # the recording happens to be a pull request
        items.append(item)
    return items


def pull_items(fake: FakeGitHub, numbers: range) -> list[dict[str, Any]]:
    recorded = fake.fixture("pulls/list")[0]
    base = next(_ids)
    return [
        copy.deepcopy(recorded) | {"id": base + n, "number": n, "title": f"pull {n}"}
        for n in numbers
    ]


def serve_repository(
    fake: FakeGitHub,
    repo: Repository,
    owner: str,
    issues: list[dict[str, Any]],
    pulls: list[dict[str, Any]],
    **kw: Any,
) -> tuple[str, str]:
    issues_path = f"/repos/{owner}/{repo.name}/issues"
    pulls_path = f"/repos/{owner}/{repo.name}/pulls"
    serve_listing(fake, issues_path, issues, **kw)
    serve_listing(fake, pulls_path, pulls, **kw)
    return issues_path, pulls_path


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def runner(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], github_app: GitHubApp
) -> AsyncIterator[SyncRunner]:
    sync_runner = SyncRunner(
        database_url, sessionmaker, github_app, grace_seconds=2, poll_seconds=0.2
    )
    yield sync_runner
    await sync_runner.close()


@pytest.fixture
async def replica(database_url: str, github_app: GitHubApp) -> AsyncIterator[SyncRunner]:
    """A second replica: its own engine, sessions and lock connection."""
    engine = create_engine(database_url, owner="repository")
    other = SyncRunner(
        database_url, create_sessionmaker(engine), github_app, grace_seconds=2, poll_seconds=0.2
    )
    yield other
    await other.close()
    await engine.dispose()


async def owner_of(sessionmaker: async_sessionmaker[AsyncSession], repo: Repository) -> str:
    async with sessionmaker() as session:
        return str(
            await session.scalar(
                sa.text("SELECT name FROM known_organizations WHERE id = :id"),
                {"id": repo.organization_id},
            )
        )


async def stored(
    sessionmaker: async_sessionmaker[AsyncSession], repo: Repository
) -> tuple[list[int], list[int]]:
    """Issue and pull request numbers stored for `repo`."""
    async with sessionmaker() as session:
        issues = await session.scalars(
            sa.select(Issue.number).where(Issue.repository_id == repo.id).order_by(Issue.number)
        )
        pulls = await session.scalars(
            sa.select(PullRequest.number)
            .where(PullRequest.repository_id == repo.id)
            .order_by(PullRequest.number)
        )
        return list(issues), list(pulls)


@dataclass
class SyncEvents:
    progress: list[events_pb2.RepositorySyncProgress]
    completed: list[events_pb2.RepositorySyncCompleted]
    failed: list[events_pb2.RepositorySyncFailed]


async def sync_events(
    sessionmaker: async_sessionmaker[AsyncSession], repo: Repository
) -> SyncEvents:
    """The sync events of `repo` in the outbox, in order."""
    found = SyncEvents([], [], [])
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                sa.select(OutboxEvent.subject, OutboxEvent.payload)
                .where(
                    OutboxEvent.subject.in_(
                        [events.SYNC_PROGRESS, events.SYNC_COMPLETED, events.SYNC_FAILED]
                    )
                )
                .order_by(OutboxEvent.seq)
            )
        ).all()
    for subject, payload in rows:
        if subject == events.SYNC_PROGRESS:
            progress = events_pb2.RepositorySyncProgress.FromString(payload)
            if progress.repository_id == str(repo.id):
                found.progress.append(progress)
        elif subject == events.SYNC_COMPLETED:
            completed = events_pb2.RepositorySyncCompleted.FromString(payload)
            if completed.repository_id == str(repo.id):
                found.completed.append(completed)
        else:
            failed = events_pb2.RepositorySyncFailed.FromString(payload)
            if failed.repository_id == str(repo.id):
                found.failed.append(failed)
    return found


async def job_of(sessionmaker: async_sessionmaker[AsyncSession], repo: Repository) -> SyncJob:
    async with sessionmaker() as session:
        job = await sync_jobs.get(session, repo.id)
    assert job is not None
    return job


async def only_this_one_due(
    sessionmaker: async_sessionmaker[AsyncSession], repo: Repository
) -> None:
    """The schedule queued the repositories of earlier tests too: leave them be."""
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(SyncJob).where(SyncJob.repository_id != repo.id).values(run_at=None)
        )


async def make_due(sessionmaker: async_sessionmaker[AsyncSession], repo: Repository) -> None:
    """As if the job's retry time had come."""
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(SyncJob).where(SyncJob.repository_id == repo.id).values(run_at=sa.func.now())
        )


# --- the GitHub client -----------------------------------------------------------------------


async def test_installation_token_from_app_jwt_is_cached(
    fake_github: FakeGitHub, github_app: GitHubApp, token_requests: list[dict[str, Any]]
) -> None:
    serve_listing(fake_github, "/repos/octo/hello/issues", issue_items(fake_github, 3))

    for _ in range(2):
        async with github_app.installation(77) as gh:
            pages = [page async for page in gh.issues("octo", "hello")]
            assert [len(p.items) for p in pages] == [3]

    # One token for both: the JWT (RS256, issuer = the App id, at most 10 minutes) was
    # exchanged once and the token reused until shortly before it expires.
    assert len(token_requests) == 1
    claims = token_requests[0]
    assert claims["exp"] - claims["iat"] <= 600
    assert [c.path for c in fake_github.calls("POST")] == ["/app/installations/77/access_tokens"]
    listing = fake_github.calls("GET", "/repos/octo/hello/issues")
    assert all(c.headers["Authorization"] == f"token {TOKEN}" for c in listing)
    assert listing[0].query == {
        "state": "all",
        "per_page": "100",
        "sort": "created",
        "direction": "asc",
    }


async def test_pages_follow_the_link_header(fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    items = issue_items(fake_github, 250)
    serve_listing(fake_github, "/repos/octo/hello/issues", items)

    async with github_app.installation(78) as gh:
        pages = [page async for page in gh.issues("octo", "hello")]

    assert [(p.number, len(p.items), p.has_next, p.last_page) for p in pages] == [
        (1, 100, True, 3),
        (2, 100, True, 3),
        (3, 50, False, None),
    ]
    assert [i["id"] for p in pages for i in p.items] == [i["id"] for i in items]
    queries = [c.query.get("page") for c in fake_github.calls("GET", "/repos/octo/hello/issues")]
    assert queries == [None, "2", "3"]


async def test_never_follows_a_link_to_another_host(
    fake_github: FakeGitHub, github_app: GitHubApp
) -> None:
    fake_github.respond(
        "GET",
        "/repos/octo/hello/pulls",
        [],
        headers={"Link": '<https://evil.example.com/steal?page=2>; rel="next"'},
    )
    async with github_app.installation(79) as gh:
        with pytest.raises(GitHubError, match="another origin"):
            _ = [page async for page in gh.pulls("octo", "hello")]


async def test_server_errors_are_retried(fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    serve_listing(fake_github, "/repos/octo/hello/issues", issue_items(fake_github, 2))
    fake_github.respond(
        "GET", "/repos/octo/hello/issues", {"message": "Server Error"}, status=502, times=1
    )
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with github_app.installation(80, sleep=sleep) as gh:
        pages = [page async for page in gh.issues("octo", "hello")]

    assert len(pages[0].items) == 2
    assert sleeps == [1.0]


async def test_an_unknown_repository_is_an_error(
    fake_github: FakeGitHub, github_app: GitHubApp
) -> None:
    fake_github.respond("GET", "/repos/octo/gone/issues", {"message": "Not Found"}, status=404)
    async with github_app.installation(81) as gh:
        with pytest.raises(GitHubError) as raised:
            _ = [page async for page in gh.issues("octo", "gone")]
    assert raised.value.status == 404


def test_rate_limit_headers() -> None:
    now = 1_000_000.0
    exhausted = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000030"}
    assert rate_limit_wait(403, exhausted, "API rate limit exceeded", now) == 31.0
    assert rate_limit_wait(429, exhausted, "", now) == 31.0
    assert rate_limit_wait(403, {"retry-after": "7"}, "", now) == 7.0
    assert rate_limit_wait(403, {}, "You have exceeded a secondary rate limit", now) == 60.0
    assert rate_limit_wait(403, {"x-ratelimit-remaining": "12"}, "Forbidden", now) is None
    assert rate_limit_wait(404, exhausted, "", now) is None

    policy = RateLimitPolicy(max_wait=100, low_remaining=50)
    plenty = {"x-ratelimit-remaining": "4000", "x-ratelimit-reset": "1003600"}
    assert pacing_delay(plenty, policy, now) == 0
    low = {"x-ratelimit-remaining": "10", "x-ratelimit-reset": "1000300"}
    assert pacing_delay(low, policy, now) == 30.0  # 300 s left for 10 requests
    assert (
        pacing_delay({"x-ratelimit-remaining": "1", "x-ratelimit-reset": "1003600"}, policy, now)
        == 100
    )


# --- the sync --------------------------------------------------------------------------------


def progress_of(found: SyncEvents) -> list[tuple[int, int]]:
    return [(p.synced, p.expected) for p in found.progress]


async def test_sync_activity_reports_the_longest_a_running_sync_stored_nothing() -> None:
    activity = SyncActivity()
    with activity.running("a"), activity.running("b"):
        await asyncio.sleep(0.05)
        activity.progressed("b")
        activity.progressed("not running")  # ignored
        assert activity.count() == 2
        assert activity.idle_seconds() >= 0.05  # "a" has stored nothing since it started
        with activity.running("c"):
            assert activity.idle_seconds() >= 0.05  # the longest, not the latest
    assert (activity.count(), activity.idle_seconds()) == (0, 0.0)


def sync_metrics() -> Counter[str]:
    """The sync's counters (polar_repository.metrics) now, to compare before and after."""

    def get(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return Counter(
        {
            "pages_pulls": get("polar_github_sync_pages_total", listing="pulls"),
            "pages_issues": get("polar_github_sync_pages_total", listing="issues"),
            "rows_pull_request": get("polar_github_sync_rows_total", kind="pull_request"),
            "rows_issue": get("polar_github_sync_rows_total", kind="issue"),
            "completed": get("polar_github_syncs_total", outcome="completed"),
            "waits_rate_limited": get("polar_github_wait_seconds_count", reason="rate_limited"),
            "waited_rate_limited": get("polar_github_wait_seconds_sum", reason="rate_limited"),
        }
    )


def assert_forward(found: SyncEvents) -> None:
    """Progress only moves forward: synced and expected never decrease within a job."""
    for before, after in itertools.pairwise(found.progress):
        if before.job_id == after.job_id:
            assert after.synced >= before.synced
            assert after.expected >= before.expected
            assert after.page == before.page + 1


async def test_sync_stores_issues_and_pull_requests_with_events(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    # 230 issues, then 20 pull requests as GitHub lists them among issues (not stored as
    # issues); /pulls lists those 20.
    issues = issue_items(fake_github, 230, pull_requests=20)
    serve_repository(fake_github, repo, owner, issues, pull_items(fake_github, range(231, 251)))
    before = sync_metrics()

    job = await runner.sync(repo.id)

    assert job is not None
    assert (job.status, job.issues, job.pull_requests, job.run_at) == ("completed", 230, 20, None)
    issue_numbers, pull_numbers = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 231))
    assert pull_numbers == list(range(231, 251))

    found = await sync_events(sessionmaker, repo)
    # A progress event per page: the pulls page, then 3 issue pages (250 listed).
    assert progress_of(found) == [
        (20, 20),
        (120, 201),  # rel="last" says 3 pages of 100: at least 201
        (220, 220),
        (250, 250),  # the last page: 250 exactly (230 issues + 20 pull requests)
    ]
    assert [(p.page, p.pages) for p in found.progress] == [(1, 1), (2, 4), (3, 4), (4, 4)]
    assert all(p.organization_id == str(repo.organization_id) for p in found.progress)
    assert all(p.job_id == str(job.job_id) for p in found.progress)
    assert [(c.issues, c.pull_requests, c.skipped) for c in found.completed] == [(230, 20, 0)]
    assert found.failed == []
    assert sync_metrics() - before == Counter(
        pages_pulls=1, pages_issues=3, rows_pull_request=20, rows_issue=230, completed=1
    )
    assert REGISTRY.get_sample_value("polar_github_syncs_running") == 0
    assert REGISTRY.get_sample_value("polar_github_sync_idle_seconds") == 0
    # Each names the last issue stored so far (the v1 stream's issue.synced).
    async with sessionmaker() as session:
        titles = {
            str(i): t
            for i, t in await session.execute(
                sa.select(Issue.id, Issue.title).where(Issue.repository_id == repo.id)
            )
        }
    assert found.progress[0].issue_id == ""  # the pulls page: no issue yet
    assert all(titles[p.issue_id] == p.issue_title for p in found.progress[1:])

    async with sessionmaker() as session:
        subjects = (
            await session.scalars(
                sa.select(OutboxEvent.subject).where(
                    OutboxEvent.subject.in_([events.ISSUE_CREATED, events.PULL_REQUEST_CREATED]),
                    OutboxEvent.created_at >= sa.func.now() - sa.text("interval '1 minute'"),
                )
            )
        ).all()
    assert subjects.count(events.ISSUE_CREATED) >= 230
    assert subjects.count(events.PULL_REQUEST_CREATED) >= 20


async def test_sync_of_5000_issues_is_complete_and_progress_only_moves_forward(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    # Pull requests among the issues, as GitHub lists them: the estimate from the issue
    # listing counts them, the pulls listing before it knows them exactly.
    issues = issue_items(fake_github, 4700, pull_requests=300)
    issues_path, _ = serve_repository(
        fake_github, repo, owner, issues, pull_items(fake_github, range(4701, 5001))
    )

    async with sessionmaker.begin() as session:
        assert await runner.start(session, repo.id)
    await runner.run_due()

    issue_numbers, pull_numbers = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 4701))
    assert pull_numbers == list(range(4701, 5001))
    assert len(fake_github.calls("GET", issues_path)) == 50
    found = await sync_events(sessionmaker, repo)
    assert len(found.progress) == 53  # 3 pulls pages and 50 issue pages
    assert_forward(found)
    assert (found.progress[-1].synced, found.progress[-1].expected) == (5000, 5000)
    assert [(c.issues, c.pull_requests) for c in found.completed] == [(4700, 300)]


async def test_sync_waits_for_the_rate_limit_reset_and_resumes(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    limited: list[float] = []

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page != 2 or limited or "issues" not in request.path:
            return None
        reset = int(time.time()) + 2  # 1-2 s ahead: reset is whole seconds
        limited.append(time.monotonic())
        body = {"message": "API rate limit exceeded for installation ID 1."}
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
        return json_response(body, 403, headers)

    issues_path, _ = serve_repository(
        fake_github, repo, owner, issue_items(fake_github, 300), [], gate=gate
    )

    started = time.monotonic()
    before = sync_metrics()
    job = await runner.sync(repo.id)

    assert job is not None
    assert (job.status, job.issues) == ("completed", 300)
    assert time.monotonic() - started >= 1  # it waited for the reset
    waited = sync_metrics() - before
    assert waited["waits_rate_limited"] == 1
    assert waited["waited_rate_limited"] >= 1
    pages = [c.query.get("page", "1") for c in fake_github.calls("GET", issues_path)]
    assert pages == ["1", "2", "2", "3"]  # the same page again, nothing skipped
    issue_numbers, _ = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 301))
    found = await sync_events(sessionmaker, repo)
    assert [p.synced for p in found.progress] == [0, 100, 200, 300]
    assert len(found.completed) == 1


async def test_a_far_rate_limit_reset_reschedules_the_sync_for_the_reset(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    issues_path, _ = serve_repository(
        fake_github,
        repo,
        owner,
        issue_items(fake_github, 150),
        pull_items(fake_github, range(151, 153)),
    )
    reset = int(time.time()) + 3600
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    fake_github.respond("GET", issues_path, {"message": "limit"}, status=403, headers=headers)

    job = await runner.sync(repo.id)

    # Not abandoned: failed for now, due again at the reset, without counting an attempt.
    assert job is not None
    assert (job.status, job.failure_reason, job.attempts) == ("failed", "rate_limited", 0)
    assert job.run_at is not None
    assert abs(job.run_at.timestamp() - reset) < 10
    assert job.phase == "issues"  # the pulls are stored: it resumes with the issues
    found = await sync_events(sessionmaker, repo)
    assert found.completed == []
    [failed] = found.failed
    assert failed.reason == sync_pb2.SYNC_FAILURE_REASON_RATE_LIMITED
    assert abs(failed.retry_at.seconds - reset) < 10
    assert (failed.issues, failed.pull_requests) == (0, 2)
    assert repo.id not in runner.running

    await runner.run_due()  # not due yet: nothing happens
    assert len(fake_github.calls("GET", issues_path)) == 1

    # The reset has come.
    fake_github.reset()
    serve_repository(fake_github, repo, owner, issue_items(fake_github, 150), [])
    await make_due(sessionmaker, repo)
    await runner.run_due()
    done = await job_of(sessionmaker, repo)
    assert (done.status, done.issues, done.pull_requests) == ("completed", 150, 2)
    assert fake_github.calls("GET", f"/repos/{owner}/{repo.name}/pulls") == []  # resumed


async def test_transient_failures_are_retried_with_backoff_then_given_up(
    fake_github: FakeGitHub,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    github_app: GitHubApp,
    make_repo: MakeRepo,
) -> None:
    github_app.retries = 0  # the client's own quick retries are tested above
    runner = SyncRunner(
        database_url,
        sessionmaker,
        github_app,
        retry=RetryPolicy(base=30, max=3600, max_attempts=3),
    )
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    issues_path, _ = serve_repository(
        fake_github, repo, owner, issue_items(fake_github, 250), [], per_page=100
    )
    fake_github.respond("GET", issues_path, {"message": "Server Error"}, status=502)
    try:
        job = await runner.sync(repo.id)
        assert job is not None
        assert job.run_at is not None
        assert (job.status, job.failure_reason, job.attempts) == ("failed", "github_unavailable", 1)
        first_delay = job.run_at - job.modified_at if job.modified_at else None
        assert first_delay is not None
        assert abs(first_delay.total_seconds() - 30) < 2

        await make_due(sessionmaker, repo)
        await runner.run_due()
        job = await job_of(sessionmaker, repo)
        assert job.attempts == 2
        assert job.run_at is not None
        assert job.modified_at is not None
        assert abs((job.run_at - job.modified_at).total_seconds() - 60) < 2  # doubled

        await make_due(sessionmaker, repo)
        await runner.run_due()
        job = await job_of(sessionmaker, repo)
        assert (job.status, job.attempts, job.run_at) == ("failed", 3, None)  # given up
        found = await sync_events(sessionmaker, repo)
        assert [f.reason for f in found.failed] == [
            sync_pb2.SYNC_FAILURE_REASON_GITHUB_UNAVAILABLE
        ] * 3
        assert [f.HasField("retry_at") for f in found.failed] == [True, True, False]
        assert "502" in found.failed[0].message
    finally:
        await runner.close()


async def test_a_retry_resumes_from_the_last_stored_page(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    github_app: GitHubApp,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    github_app.retries = 0
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    failing = [True]

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page == 3 and failing[0] and "issues" in request.path:
            return json_response({"message": "Server Error"}, 503)
        return None

    issues_path, _ = serve_repository(
        fake_github, repo, owner, issue_items(fake_github, 300), [], gate=gate
    )
    job = await runner.sync(repo.id)
    assert job is not None
    assert (job.status, job.phase, job.next_page, job.issues) == ("failed", "issues", 3, 200)

    failing[0] = False
    await make_due(sessionmaker, repo)
    await runner.run_due()

    pages = [c.query.get("page", "1") for c in fake_github.calls("GET", issues_path)]
    assert pages == ["1", "2", "3", "3"]
    done = await job_of(sessionmaker, repo)
    assert (done.status, done.issues, done.job_id) == ("completed", 300, job.job_id)
    found = await sync_events(sessionmaker, repo)
    assert [p.synced for p in found.progress] == [0, 100, 200, 300]
    assert_forward(found)
    assert len(found.failed) == len(found.completed) == 1


async def test_a_revoked_token_is_replaced_without_a_restart(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
    token_requests: list[dict[str, Any]],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    serve_repository(fake_github, repo, owner, issue_items(fake_github, 3), [])
    first = await runner.sync(repo.id)
    assert first is not None
    assert first.status == "completed"
    assert len(token_requests) == 1

    # The cached token is revoked (say, the App was reinstalled); GitHub issues new ones.
    TOKENS.update(issued="ghs_newToken", accepted={"ghs_newToken"})
    second = await runner.sync(repo.id)

    assert second is not None
    assert second.status == "completed"
    assert len(token_requests) == 2  # dropped and fetched once more
    found = await sync_events(sessionmaker, repo)
    assert (len(found.completed), found.failed) == (2, [])


async def test_access_refused_even_with_a_fresh_token_fails_for_good(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
    token_requests: list[dict[str, Any]],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    serve_repository(fake_github, repo, owner, issue_items(fake_github, 3), [])
    TOKENS.update(accepted=set())  # every token refused

    job = await runner.sync(repo.id)

    assert job is not None
    assert (job.status, job.failure_reason, job.run_at) == ("failed", "access_revoked", None)
    assert len(token_requests) == 2  # the cached one and one fresh one
    [failed] = (await sync_events(sessionmaker, repo)).failed
    assert failed.reason == sync_pb2.SYNC_FAILURE_REASON_ACCESS_REVOKED
    assert not failed.HasField("retry_at")


async def test_a_repository_gone_from_github_is_removed_and_not_retried(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    fake_github.respond(
        "GET", f"/repos/{owner}/{repo.name}/pulls", {"message": "Not Found"}, status=404
    )

    job = await runner.sync(repo.id)

    assert job is not None
    assert (job.status, job.failure_reason, job.run_at) == ("failed", "repository_gone", None)
    [failed] = (await sync_events(sessionmaker, repo)).failed
    assert failed.reason == sync_pb2.SYNC_FAILURE_REASON_REPOSITORY_GONE
    assert not failed.HasField("retry_at")
    async with sessionmaker() as session:
        deleted_at = await session.scalar(
            sa.select(Repository.deleted_at).where(Repository.id == repo.id)
        )
        gone = await session.scalars(
            sa.select(OutboxEvent.payload).where(OutboxEvent.subject == events.REPOSITORY_DELETED)
        )
        deleted = [events_pb2.RepositoryDeleted.FromString(p).repository_id for p in gone]
    assert deleted_at is not None
    assert str(repo.id) in deleted  # what subscribers need: it is gone

    # Nothing retries it: not due, and the schedule passes over deleted repositories.
    async with sessionmaker.begin() as session:
        await sync_jobs.schedule(session, interval=1, margin=0)
    await only_this_one_due(sessionmaker, repo)
    await runner.run_due()
    assert len(fake_github.calls("GET", f"/repos/{owner}/{repo.name}/pulls")) == 1


async def test_malformed_items_are_skipped_counted_and_reported(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    issues = issue_items(fake_github, 150)
    del issues[9]["number"]  # issue 10: no number
    issues[119]["title"] = "nul \x00 byte"  # issue 120: PostgreSQL refuses the text
    issues[130] = None  # type: ignore[call-overload]  # not even an object
    pulls = pull_items(fake_github, range(151, 154))
    pulls[1]["created_at"] = "yesterday"  # pull 152: not a timestamp
    serve_repository(fake_github, repo, owner, issues, pulls)

    with capture_logs() as logs:
        job = await runner.sync(repo.id)

    assert job is not None
    assert job.status == "completed", job.failure_message
    issue_numbers, pull_numbers = await stored(sessionmaker, repo)
    assert issue_numbers == [n for n in range(1, 151) if n not in (10, 120, 131)]
    assert pull_numbers == [151, 153]
    [completed] = (await sync_events(sessionmaker, repo)).completed
    assert (completed.issues, completed.pull_requests, completed.skipped) == (147, 2, 4)
    reported = {(s.kind, s.external_id, s.number) for s in completed.skipped_items}
    assert reported == {
        ("pull_request", pulls[1]["id"], 152),
        ("issue", issues[9]["id"], 0),
        ("issue", issues[119]["id"], 120),
        ("issue", 0, 0),
    }
    assert all(s.reason for s in completed.skipped_items)
    assert job.skipped_count == 4
    assert len(job.skipped) == 4
    # Logged by id and reason, never the item itself.
    skipped_logs = [entry for entry in logs if entry["event"] == "item skipped"]
    assert len(skipped_logs) == 4
    assert all(set(e) == {"kind", "id", "reason", "event", "log_level"} for e in skipped_logs)
    text = repr(logs)
    assert "nul \\x00 byte" not in text
    assert "pull 152" not in text
    assert issues[9]["title"] not in text


async def test_pull_requests_get_their_comments_from_the_issue_listing(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    issues = issue_items(fake_github, 2, pull_requests=2)
    issues[2]["comments"], issues[3]["comments"] = 7, 0
    pulls = pull_items(fake_github, range(3, 5))
    assert all("comments" not in p for p in pulls)  # the pulls listing lacks it
    serve_repository(fake_github, repo, owner, issues, pulls)

    job = await runner.sync(repo.id)

    assert job is not None
    assert job.status == "completed"
    async with sessionmaker() as session:
        comments = dict(
            (
                await session.execute(
                    sa.select(PullRequest.number, PullRequest.comments).where(
                        PullRequest.repository_id == repo.id
                    )
                )
            ).all()
        )
    assert comments == {3: 7, 4: 0}


async def test_new_or_changed_pull_requests_get_their_full_object(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    pulls = pull_items(fake_github, range(1, 4))
    recorded = fake_github.fixture("pulls/get")
    details = {"commits", "additions", "deletions", "changed_files", "review_comments"}
    assert details.isdisjoint(pulls[0])  # what the listing lacks

    async def full(request: web.Request) -> web.StreamResponse:
        number = int(request.path.rsplit("/", 1)[1])
        [listed] = [p for p in pulls if p["number"] == number]
        return json_response(recorded | listed | {"commits": number, "additions": 10 * number})

    fake_github.handle("GET", f"/repos/{owner}/{repo.name}/pulls/{{number}}", full)
    serve_repository(fake_github, repo, owner, [], pulls)
    details_path = f"/repos/{owner}/{repo.name}/pulls/{{number}}"

    job = await runner.sync(repo.id)

    assert job is not None
    assert job.status == "completed"
    async with sessionmaker() as session:
        stored = (
            await session.execute(
                sa.select(PullRequest.number, PullRequest.commits, PullRequest.additions)
                .where(PullRequest.repository_id == repo.id)
                .order_by(PullRequest.number)
            )
        ).all()
    assert [tuple(r) for r in stored] == [(1, 1, 10), (2, 2, 20), (3, 3, 30)]
    assert len(fake_github.calls("GET", details_path)) == 3

    # Unchanged: no request for details; one changed since: one request.
    pulls[1]["updated_at"] = "2030-01-01T00:00:00Z"
    await runner.sync(repo.id)
    assert len(fake_github.calls("GET", details_path)) == 4


async def test_only_one_replica_syncs_a_repository(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    replica: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    release = asyncio.Event()

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        await release.wait()  # holds the first sync mid-flight
        return None

    issues_path, _ = serve_repository(
        fake_github, repo, owner, issue_items(fake_github, 150), [], gate=gate
    )

    # Both replicas race for it: exactly one runs it.
    first = asyncio.create_task(runner.sync(repo.id))
    second = asyncio.create_task(replica.sync(repo.id))
    done, _ = await asyncio.wait({first, second}, return_when="FIRST_COMPLETED")
    assert [t.result() for t in done] == [None]
    # Neither can start it again while it runs, nor can the same replica.
    assert await runner.sync(repo.id) is None
    assert await replica.sync(repo.id) is None

    release.set()
    await asyncio.gather(first, second)

    assert len(fake_github.calls("GET", issues_path)) == 2  # one sync, two pages
    found = await sync_events(sessionmaker, repo)
    assert [(c.issues, c.pull_requests) for c in found.completed] == [(150, 0)]
    # Finished: the lock is free for the next sync, in either replica.
    again = await replica.sync(repo.id)
    assert again is not None
    assert again.status == "completed"


async def test_sync_stops_when_its_lock_is_lost_and_resumes(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    on_page_2 = asyncio.Event()
    release = asyncio.Event()

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page == 2 and not release.is_set():
            on_page_2.set()
            await release.wait()
        return None

    issues_path, _ = serve_repository(
        fake_github, repo, owner, issue_items(fake_github, 200), [], gate=gate
    )
    sync = asyncio.create_task(runner.sync(repo.id))
    await on_page_2.wait()

    # Its lock connection dies (say, a network cut): the lock is free for another replica.
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        key = lock_key(repo.id) & 0xFFFF_FFFF_FFFF_FFFF
        pid = await admin.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = $1"
            " AND objid::bigint = $2",
            key >> 32,
            key & 0xFFFF_FFFF,
        )
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    release.set()

    job = await sync
    assert job is not None
    assert (job.status, job.next_page) == ("running", 2)
    issue_numbers, _ = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 101))  # page 2 was not written

    # Still due: the runner connects again and resumes it from page 2.
    await runner.run_due()
    issue_numbers, _ = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 201))
    pages = [c.query.get("page", "1") for c in fake_github.calls("GET", issues_path)]
    assert pages == ["1", "2", "2"]
    assert (await job_of(sessionmaker, repo)).status == "completed"


async def test_shutdown_stops_running_syncs_and_another_replica_resumes(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    replica: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)

    limited = asyncio.Event()

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page == 2 and not limited.is_set():
            limited.set()
            reset = int(time.time()) + 8  # a long wait, cut short by the shutdown
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
            return json_response({"message": "limit"}, 403, headers)
        return None

    serve_repository(fake_github, repo, owner, issue_items(fake_github, 200), [], gate=gate)
    stop = asyncio.Event()
    worker = asyncio.create_task(runner.run(stop))
    async with sessionmaker.begin() as session:
        assert await runner.start(session, repo.id)  # the worker wakes on its NOTIFY
    await asyncio.wait_for(limited.wait(), 5)
    await asyncio.sleep(0.1)  # the sync is in its rate-limit wait now

    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(worker, 5)

    assert time.monotonic() - started < 2  # did not sit out the rate-limit wait
    assert runner.running == frozenset()
    found = await sync_events(sessionmaker, repo)
    assert (found.completed, found.failed) == ([], [])
    assert (await job_of(sessionmaker, repo)).status == "running"  # and due, for any replica
    await replica.run_due()  # its lock went with the runner's connection
    job = await job_of(sessionmaker, repo)
    assert (job.status, job.issues) == ("completed", 200)


# --- requests, schedule, state ---------------------------------------------------------------


async def test_a_new_repository_is_synced_from_its_created_event(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_org: MakeOrg,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await make_org()
    name = f"installed-{next(_ids)}"
    serve_repository(
        fake_github,
        Repository(name=name),
        org.name,
        issue_items(fake_github, 120),
        pull_items(fake_github, range(121, 124)),
    )
    # What installation.created does (through ingest): the repository and its event.
    async with sessionmaker.begin() as session:
        [created] = await ingest.upsert_repositories(
            session, org.id, [ingest.repository_row({"id": next(_ids), "name": name})]
        )
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(OutboxEvent.id, OutboxEvent.payload).where(
                OutboxEvent.subject == events.REPOSITORY_CREATED,
                OutboxEvent.created_at >= sa.func.now() - sa.text("interval '1 minute'"),
            )
        )
        [(id, payload)] = [
            (id, payload)
            for id, payload in rows
            if events_pb2.RepositoryCreated.FromString(payload).repository.id == str(created.row.id)
        ]
    delivery = Delivery(events.REPOSITORY_CREATED, payload, {}, str(id), 1, 1)

    handle = on_repository_created(runner)
    # The job is written in the message's transaction: recorded before it is acknowledged.
    async with sessionmaker.begin() as session:
        with structlog.contextvars.bound_contextvars(message_id=str(id), subject="x"):
            await handle(session, delivery)
            await handle(session, delivery)  # a redelivery queues nothing more
    job = await job_of(sessionmaker, created.row)
    assert (job.status, job.trigger) == ("queued", "created")

    merged = [structlog.contextvars.merge_contextvars]
    consumer_context = structlog.contextvars.bound_contextvars(message_id="m", subject="y")
    with capture_logs(processors=merged) as logs, consumer_context:
        await runner.run_due()

    issue_numbers, pull_numbers = await stored(sessionmaker, created.row)
    assert (len(issue_numbers), pull_numbers) == (120, [121, 122, 123])
    found = await sync_events(sessionmaker, created.row)
    assert [(c.issues, c.pull_requests) for c in found.completed] == [(120, 3)]
    # The sync's log lines carry its own context, not the consumer's.
    lines = [e for e in logs if e["event"] in ("sync started", "sync completed")]
    assert len(lines) == 2
    for line in lines:
        assert line["job_id"] == str(job.job_id)
        assert line["repository_id"] == str(created.row.id)
        assert "message_id" not in line
        assert "subject" not in line

    with pytest.raises(Reject):
        async with sessionmaker.begin() as session:
            await handle(session, Delivery(events.REPOSITORY_CREATED, b"\xff", {}, "x", 1, 2))


async def test_sync_repository_records_the_job_with_the_request(
    runner: SyncRunner, make_repo: MakeRepo, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    repo = await make_repo()
    # What the SyncRepository RPC does in its transaction: rolled back, nothing is queued.
    async with sessionmaker() as session:
        await session.begin()
        assert await service.sync_repository(session, runner, repo.id)
        await session.rollback()
    async with sessionmaker() as session:
        assert await sync_jobs.get(session, repo.id) is None
    # Committed, the job is there (before anything runs it); a second request adds nothing.
    async with sessionmaker.begin() as session:
        assert await service.sync_repository(session, runner, repo.id)
    job = await job_of(sessionmaker, repo)
    assert (job.status, job.trigger, job.since) == ("queued", "request", None)
    async with sessionmaker.begin() as session:
        assert not await service.sync_repository(session, runner, repo.id)
    assert (await job_of(sessionmaker, repo)).job_id == job.job_id


async def test_without_a_github_app_nothing_starts(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_github: FakeGitHub,
    make_repo: MakeRepo,
) -> None:
    unconfigured = SyncRunner(database_url, sessionmaker, GitHubApp(fake_github.url, "", ""))
    repo = await make_repo()
    with pytest.raises(SyncNotConfigured):
        async with sessionmaker.begin() as session:
            await unconfigured.start(session, repo.id)
    await unconfigured.close()
    assert fake_github.calls() == []


async def test_disabled_issues_still_sync_pull_requests(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    serve_listing(
        fake_github, f"/repos/{owner}/{repo.name}/pulls", pull_items(fake_github, range(1, 3))
    )
    fake_github.respond(
        "GET", f"/repos/{owner}/{repo.name}/issues", {"message": "Issues are disabled"}, status=410
    )

    job = await runner.sync(repo.id)

    assert job is not None
    assert (job.status, job.issues, job.pull_requests, job.expected) == ("completed", 0, 2, 2)


async def test_periodic_sync_is_incremental_since_the_last_success(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    issues_path, pulls_path = serve_repository(
        fake_github, repo, owner, issue_items(fake_github, 5), pull_items(fake_github, range(6, 8))
    )
    first = await runner.sync(repo.id)
    assert first is not None
    assert first.last_success_started_at is not None
    # Its slot of a 1-second interval has come since.
    await asyncio.sleep(1.1)
    fake_github.reset()
    old = pull_items(fake_github, range(8, 10))
    old[0]["updated_at"] = "2030-01-01T00:00:00Z"  # changed since; the other one is older
    serve_repository(fake_github, repo, owner, issue_items(fake_github, 1), old)

    async with sessionmaker.begin() as session:
        assert await sync_jobs.schedule(session, interval=1, margin=0) >= 1
        assert await sync_jobs.schedule(session, interval=1, margin=0) == 0  # queued once
    await only_this_one_due(sessionmaker, repo)
    await runner.run_due()

    job = await job_of(sessionmaker, repo)
    assert (job.status, job.trigger) == ("completed", "schedule")
    assert job.since == first.last_success_started_at
    [issues_call] = fake_github.calls("GET", issues_path)
    assert datetime.fromisoformat(issues_call.query["since"]) == first.last_success_started_at
    [pulls_call] = fake_github.calls("GET", pulls_path)
    assert (pulls_call.query["sort"], pulls_call.query["direction"]) == ("updated", "desc")
    assert job.pull_requests == 1  # only the one updated since


async def test_periodic_slots_spread_over_the_interval(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # The slot formula of sync_jobs.schedule over 1000 repository ids and an hour: no
    # minute holds more than a few (an even spread is 1000 / 60 ≈ 17 per minute).
    async with sessionmaker() as session:
        per_minute = (
            await session.scalars(
                sa.text(
                    "SELECT count(*) FROM (SELECT mod(abs(hashtextextended("
                    "gen_random_uuid()::text, 0)), 3600) / 60 AS minute"
                    " FROM generate_series(1, 1000)) s GROUP BY minute"
                )
            )
        ).all()
    assert len(per_minute) == 60
    assert max(per_minute) <= 40


async def test_sync_state_through_the_rpc(
    stub: Any,
    fake_github: FakeGitHub,
    github_app: GitHubApp,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    State = sync_pb2.RepositorySyncState
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)

    async def state() -> sync_pb2.RepositorySyncState:
        reply = await stub.GetRepositorySyncState(
            pb.GetRepositorySyncStateRequest(repository_id=str(repo.id))
        )
        return reply.state  # type: ignore[no-any-return]

    assert (await state()).status == State.STATUS_IDLE
    async with sessionmaker.begin() as session:
        await runner.start(session, repo.id)
    assert (await state()).status == State.STATUS_QUEUED

    on_page_2, release = asyncio.Event(), asyncio.Event()

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page == 2:
            on_page_2.set()
            await release.wait()
        return None

    serve_repository(fake_github, repo, owner, issue_items(fake_github, 250), [], gate=gate)
    running = asyncio.create_task(runner.run_due())
    await on_page_2.wait()
    now = await state()
    assert now.status == State.STATUS_RUNNING
    assert (now.page, now.pages, now.synced, now.expected) == (2, 4, 100, 201)
    release.set()
    await running
    done = await state()
    assert (done.status, done.synced, done.HasField("last_success_at")) == (
        State.STATUS_IDLE,
        250,
        True,
    )

    github_app.retries = 0
    fake_github.respond(
        "GET", f"/repos/{owner}/{repo.name}/pulls", {"message": "Server Error"}, status=502
    )
    await runner.sync(repo.id)
    failed = await state()
    assert failed.status == State.STATUS_FAILED
    assert failed.failure_reason == sync_pb2.SYNC_FAILURE_REASON_GITHUB_UNAVAILABLE
    assert "502" in failed.failure_message
    assert failed.HasField("next_run_at")
    assert failed.attempts == 1


async def test_sync_state_of_an_unknown_repository_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetRepositorySyncState(
            pb.GetRepositorySyncStateRequest(repository_id=str(uuid.uuid4()))
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetRepositorySyncState(pb.GetRepositorySyncStateRequest(repository_id="x"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the service as a process: kill -9 mid-sync ----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    port: int


@pytest.fixture
async def start_service(
    settings_env: dict[str, str], app_key: rsa.RSAPrivateKey, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[ServiceProcess]]]:
    """Starts `python -m polar_repository` (as a deployment runs it) with the test's GitHub
    App; waits until it serves."""
    started: list[asyncio.subprocess.Process] = []
    pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    async def start(name: str) -> ServiceProcess:
        port = free_port()
        env = os.environ | settings_env
        env |= {
            "POLAR_REPOSITORY_GRPC_PORT": str(port),
            "POLAR_GITHUB_APP_ID": APP_ID,
            "POLAR_GITHUB_APP_PRIVATE_KEY": pem,
            "POLAR_SYNC_POLL_SECONDS": "0.2",
            "POLAR_SYNC_INTERVAL_SECONDS": "0",
        }
        # Logs go to a file: an unread pipe fills up and then blocks the process.
        with (tmp_path / f"{name}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "polar_repository", env=env, stdout=log, stderr=log
            )
        started.append(process)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
                except grpc.aio.AioRpcError:
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            await eventually(serving, within=30)
        return ServiceProcess(process, port)

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_sync_killed_mid_flight_completes_in_the_next_process_without_duplicates(
    fake_github: FakeGitHub,
    token_requests: list[dict[str, Any]],
    start_service: Callable[[str], Awaitable[ServiceProcess]],
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
    js: JetStreamContext,
    nats_prefix: str,
    tmp_path: Path,
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    on_page_3, release = asyncio.Event(), asyncio.Event()

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page == 3 and "issues" in request.path and not release.is_set():
            on_page_3.set()
            await release.wait()  # the process is killed while it waits for this page
        return None

    issues_path, pulls_path = serve_repository(
        fake_github,
        repo,
        owner,
        issue_items(fake_github, 430, pull_requests=20),
        pull_items(fake_github, range(431, 451)),
        gate=gate,
    )
    first = await start_service("first")
    # What installing the App does: repository_created, whose consumer records the job.
    created = events_pb2.RepositoryCreated(
        repository=repository_pb2.Repository(
            id=str(repo.id), organization_id=str(repo.organization_id), name=repo.name
        )
    )
    event_id = str(uuid.uuid4())
    await js.publish(
        f"{nats_prefix}{events.REPOSITORY_CREATED}",
        created.SerializeToString(),
        headers={"Nats-Msg-Id": event_id, "ce-id": event_id},
    )
    await asyncio.wait_for(on_page_3.wait(), 30)
    job = await job_of(sessionmaker, repo)
    assert (job.status, job.phase, job.next_page, job.issues) == ("running", "issues", 3, 200)

    first.process.kill()  # kill -9, mid-page
    await first.process.wait()
    release.set()

    second = await start_service("second")

    async def completed() -> bool:
        return (await job_of(sessionmaker, repo)).status == "completed"

    await eventually(completed, within=30)

    # Resumed where the first left off: the page it was fetching, not from the start.
    pages = [c.query.get("page", "1") for c in fake_github.calls("GET", issues_path)]
    assert pages == ["1", "2", "3", "3", "4", "5"]
    assert len(fake_github.calls("GET", pulls_path)) == 1
    issue_numbers, pull_numbers = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 431))
    assert pull_numbers == list(range(431, 451))
    # No duplicate events: one issue_created per issue, one progress per page, one end.
    async with sessionmaker() as session:
        issue_events = (
            await session.scalars(
                sa.select(OutboxEvent.payload).where(OutboxEvent.subject == events.ISSUE_CREATED)
            )
        ).all()
    ours = [
        i.issue.number
        for i in map(events_pb2.IssueCreated.FromString, issue_events)
        if i.issue.repository_id == str(repo.id)
    ]
    assert sorted(ours) == list(range(1, 431))
    found = await sync_events(sessionmaker, repo)
    assert [p.page for p in found.progress] == [1, 2, 3, 4, 5, 6]
    assert_forward(found)
    assert [(c.issues, c.pull_requests, c.job_id) for c in found.completed] == [
        (430, 20, str(job.job_id))
    ]
    assert found.failed == []
    assert '"sync resumed"' in (tmp_path / "second.log").read_text()

    second.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.process.wait(), timeout=30) == 0


# --- same-second ties --------------------------------------------------------------------------


@pytest.mark.parametrize("together", [False, True], ids=["apart", "in-one-batch"])
async def test_a_same_second_tie_is_resolved_by_github(
    fake_github: FakeGitHub,
    github_app: GitHubApp,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_repo: MakeRepo,
    together: bool,
) -> None:
    """Two edits within one second carry the same updated_at; they arrive in the wrong
    order. The issue is re-read from GitHub, whose answer (the later edit) is stored."""
    refresher = Refresher(sessionmaker, github_app)
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    first = issue_items(fake_github, 1)[0] | {
        "title": "first edit",
        "updated_at": "2024-05-01T10:00:00Z",
    }
    second = first | {"title": "second edit", "body": "the final text"}
    reads: list[str] = []

    async def current(request: web.Request) -> web.StreamResponse:
        reads.append(request.path)
        return json_response(second)

    fake_github.handle("GET", f"/repos/{owner}/{repo.name}/issues/{first['number']}", current)

    def delivery(item: dict[str, Any]) -> Delivery:
        payload = {"action": "edited", "issue": item, "repository": {"id": repo.external_id}}
        body = json.dumps(payload).encode()
        return Delivery("github.webhook.issues.edited", body, {}, str(uuid.uuid4()), 1, 1)

    async def handle(*items: dict[str, Any]) -> None:
        async with sessionmaker.begin() as session:
            failures = await on_webhooks(
                session, [delivery(i) for i in items], refresh=refresher.refresh
            )
        assert failures == {}

    if together:
        await handle(second, first)
    else:
        await handle(second)
        await handle(first)
    await refresher.join()
    assert reads == [f"/repos/{owner}/{repo.name}/issues/{first['number']}"]
    async with sessionmaker() as session:
        issue = await session.scalar(sa.select(Issue).where(Issue.external_id == first["id"]))
    assert issue is not None
    assert (issue.title, issue.body) == ("second edit", "the final text")

    # A redelivery (same time, same values) is no tie: nothing is read again.
    await handle(second)
    await refresher.join()
    assert len(reads) == 1


async def test_a_sync_is_one_trace_with_a_span_per_page_and_its_rate_limit_wait(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    limited: list[bool] = []

    async def gate(request: web.Request, page: int) -> web.StreamResponse | None:
        if page != 2 or limited or "issues" not in request.path:
            return None
        limited.append(True)
        body = {"message": "API rate limit exceeded for installation ID 1."}
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1)}
        return json_response(body, 403, headers)

    serve_repository(fake_github, repo, owner, issue_items(fake_github, 300), [], gate=gate)
    with testing.recorded_spans() as exporter:
        job = await runner.sync(repo.id)
        spans = list(exporter.get_finished_spans())
    assert job is not None
    assert job.status == "completed"

    (sync,) = [s for s in spans if s.name == "sync"]
    assert sync.parent is None
    assert (sync.attributes or {})["polar.repository_id"] == str(repo.id)
    mine = [s for s in spans if s.context.trace_id == sync.context.trace_id]
    by_id = {s.context.span_id: s for s in mine}

    def under_sync(span: ReadableSpan) -> bool:
        while span.parent is not None:
            if span.parent.span_id == sync.context.span_id:
                return True
            span = by_id[span.parent.span_id]
        return False

    pages = [s for s in mine if s.name == "sync page"]
    # The pull request listing (one page), then the issue listing's three.
    assert [(s.attributes or {})["polar.page"] for s in pages] == [1, 2, 3, 4]
    assert all(s.parent and s.parent.span_id == sync.context.span_id for s in pages)
    (wait,) = [s for s in mine if s.name == "github rate-limit wait"]
    assert under_sync(wait)
    assert (wait.attributes or {})["polar.status"] == 403
