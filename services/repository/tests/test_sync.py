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
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import pytest
import sqlalchemy as sa
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from polar.repository.v1 import events_pb2
from polar_db.engine import asyncpg_dsn, create_engine, create_sessionmaker
from polar_db.models import Issue, Organization, OutboxEvent, PullRequest, Repository
from polar_dev.fake_github import FakeGitHub, json_response
from polar_kit.consumer import Delivery, Reject
from polar_repository import events, ingest
from polar_repository.consumers import on_webhooks
from polar_repository.github import (
    GitHubApp,
    GitHubError,
    RateLimited,
    RateLimitPolicy,
    pacing_delay,
    rate_limit_wait,
)
from polar_repository.refresh import Refresher
from polar_repository.sync import (
    LockLost,
    SyncNotConfigured,
    SyncRunner,
    lock_key,
    on_repository_created,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

APP_ID = "424242"
TOKEN = "ghs_syncTestToken"
MakeRepo = Callable[..., Awaitable[Repository]]  # conftest's make_repo
MakeOrg = Callable[..., Awaitable[Organization]]  # conftest's make_org
_ids = itertools.count(40_000_000, 10_000)  # GitHub ids: a block per listing, never reused


# --- the GitHub App and the fake GitHub ------------------------------------------------------


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
        body = {"token": TOKEN, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
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
        if request.headers.get("Authorization") != f"token {TOKEN}":
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
    sync_runner = SyncRunner(database_url, sessionmaker, github_app, grace_seconds=2)
    yield sync_runner
    await sync_runner.close()


@pytest.fixture
async def replica(database_url: str, github_app: GitHubApp) -> AsyncIterator[SyncRunner]:
    """A second replica: its own engine, sessions and lock connection."""
    engine = create_engine(database_url)
    other = SyncRunner(database_url, create_sessionmaker(engine), github_app, grace_seconds=2)
    yield other
    await other.close()
    await engine.dispose()


async def owner_of(sessionmaker: async_sessionmaker[AsyncSession], repo: Repository) -> str:
    async with sessionmaker() as session:
        return str(
            await session.scalar(
                sa.text("SELECT name FROM organizations WHERE id = :id"),
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


async def sync_events(
    sessionmaker: async_sessionmaker[AsyncSession], repo: Repository
) -> tuple[list[events_pb2.RepositorySyncProgress], list[events_pb2.RepositorySyncCompleted]]:
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                sa.select(OutboxEvent.subject, OutboxEvent.payload)
                .where(OutboxEvent.subject.in_([events.SYNC_PROGRESS, events.SYNC_COMPLETED]))
                .order_by(OutboxEvent.seq)
            )
        ).all()
    progress, completed = [], []
    for subject, payload in rows:
        if subject == events.SYNC_PROGRESS:
            message = events_pb2.RepositorySyncProgress.FromString(payload)
            if message.repository_id == str(repo.id):
                progress.append(message)
        else:
            done = events_pb2.RepositorySyncCompleted.FromString(payload)
            if done.repository_id == str(repo.id):
                completed.append(done)
    return progress, completed


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

    result = await runner.sync(repo.id)

    assert result is not None
    assert (result.issues, result.pull_requests) == (230, 20)
    issue_numbers, pull_numbers = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 231))
    assert pull_numbers == list(range(231, 251))

    progress, completed = await sync_events(sessionmaker, repo)
    # A progress event per page: 3 issue pages (250 listed), 1 pulls page.
    assert [(p.synced, p.expected) for p in progress] == [
        (100, 300),  # rel="last" says 3 pages of 100: at most 300
        (200, 300),
        (230, 250),  # the last page: 250 exactly (230 issues + 20 pull requests)
        (250, 250),
    ]
    assert all(p.organization_id == str(repo.organization_id) for p in progress)
    assert [(c.issues, c.pull_requests) for c in completed] == [(230, 20)]

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


async def test_sync_of_5000_issues_is_complete(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    issues_path, _ = serve_repository(fake_github, repo, owner, issue_items(fake_github, 5000), [])

    assert await runner.start(repo.id)
    await runner.join()

    issue_numbers, pull_numbers = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 5001))
    assert pull_numbers == []
    assert len(fake_github.calls("GET", issues_path)) == 50
    progress, completed = await sync_events(sessionmaker, repo)
    assert len(progress) == 51  # 50 issue pages and the (empty) pulls page
    assert progress[0].expected == 5000
    assert (progress[-1].synced, progress[-1].expected) == (5000, 5000)
    assert [(c.issues, c.pull_requests) for c in completed] == [(5000, 0)]


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
        if page != 2 or limited:
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
    result = await runner.sync(repo.id)

    assert result is not None
    assert result.issues == 300
    assert time.monotonic() - started >= 1  # it waited for the reset
    pages = [c.query.get("page", "1") for c in fake_github.calls("GET", issues_path)]
    assert pages == ["1", "2", "2", "3"]  # the same page again, nothing skipped
    issue_numbers, _ = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 301))
    progress, completed = await sync_events(sessionmaker, repo)
    assert [p.synced for p in progress] == [100, 200, 300, 300]
    assert len(completed) == 1


async def test_sync_gives_up_when_the_reset_is_too_far(
    fake_github: FakeGitHub,
    runner: SyncRunner,
    make_repo: MakeRepo,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    repo = await make_repo()
    owner = await owner_of(sessionmaker, repo)
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 3600)}
    fake_github.respond(
        "GET",
        f"/repos/{owner}/{repo.name}/issues",
        {"message": "limit"},
        status=403,
        headers=headers,
    )

    with pytest.raises(RateLimited):
        await runner.sync(repo.id)

    _, completed = await sync_events(sessionmaker, repo)
    assert completed == []
    assert repo.id not in runner.running
    assert await runner.start(repo.id)  # the lock was released
    await runner.join()


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

    # Both replicas race for it: exactly one wins.
    won = await asyncio.gather(runner.start(repo.id), replica.start(repo.id))
    assert sorted(won) == [False, True]
    # Neither can start it again while it runs, nor can the same replica.
    assert await runner.start(repo.id) is False
    assert await replica.start(repo.id) is False
    assert await replica.sync(repo.id) is None

    release.set()
    await asyncio.gather(runner.join(), replica.join())

    assert len(fake_github.calls("GET", issues_path)) == 2  # one sync, two pages
    _, completed = await sync_events(sessionmaker, repo)
    assert [(c.issues, c.pull_requests) for c in completed] == [(150, 0)]
    # Finished: the lock is free for the next sync, in either replica.
    assert await replica.start(repo.id)
    await replica.join()


async def test_sync_stops_when_its_lock_is_lost(
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
        if page == 2:
            on_page_2.set()
            await release.wait()
        return None

    serve_repository(fake_github, repo, owner, issue_items(fake_github, 200), [], gate=gate)
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

    with pytest.raises(LockLost):
        await sync
    issue_numbers, _ = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 101))  # page 2 was not written

    # The runner connects again for the next sync.
    assert await runner.start(repo.id)
    await runner.join()
    issue_numbers, _ = await stored(sessionmaker, repo)
    assert issue_numbers == list(range(1, 201))


async def test_shutdown_stops_running_syncs(
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
    assert await runner.start(repo.id)
    await limited.wait()
    await asyncio.sleep(0.1)  # the sync is in its rate-limit wait now

    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(worker, 5)

    assert time.monotonic() - started < 2  # did not sit out the rate-limit wait
    assert runner.running == frozenset()
    _, completed = await sync_events(sessionmaker, repo)
    assert completed == []
    assert await replica.start(repo.id)  # its lock went with the runner's connection
    await replica.join()


# --- sync on install -------------------------------------------------------------------------


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
    async with sessionmaker.begin() as session:
        await handle(session, delivery)
        await handle(session, delivery)  # a redelivery while it runs starts nothing more
    await runner.join()

    issue_numbers, pull_numbers = await stored(sessionmaker, created.row)
    assert (len(issue_numbers), pull_numbers) == (120, [121, 122, 123])
    _, completed = await sync_events(sessionmaker, created.row)
    assert [(c.issues, c.pull_requests) for c in completed] == [(120, 3)]

    with pytest.raises(Reject):
        await handle(session, Delivery(events.REPOSITORY_CREATED, b"\xff", {}, "x", 1, 2))


async def test_without_a_github_app_nothing_starts(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_github: FakeGitHub,
    make_repo: MakeRepo,
) -> None:
    unconfigured = SyncRunner(database_url, sessionmaker, GitHubApp(fake_github.url, "", ""))
    repo = await make_repo()
    with pytest.raises(SyncNotConfigured):
        await unconfigured.start(repo.id)
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

    result = await runner.sync(repo.id)

    assert result is not None
    assert (result.issues, result.pull_requests, result.expected) == (0, 2, 2)


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
