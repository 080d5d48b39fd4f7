"""GitHub sync of a repository's issues and pull requests: on SyncRepository and on install.

`SyncRunner.start(repository_id)` answers at once and syncs in a background task of this
process. One sync per repository at a time, across replicas: a sync holds a PostgreSQL
session-level advisory lock keyed by the repository for as long as it runs. The locks of a
runner live on one dedicated connection (not a pooled one, so they are never handed back to
the pool still held), and every page's transaction first checks that this connection still
holds the lock, so if the connection drops, the sync stops before writing anything more,
whichever replica takes over.

A sync pages through GET /repos/{owner}/{repo}/issues?state=all (skipping the pull requests
GitHub lists there), then /pulls?state=all, and stores each page in one transaction: the
upserted rows (through ingest, whose updated_at guard keeps a newer webhook's data), their
issue/pull request events, and a sync_progress event. sync_completed follows the last page.

Progress: `synced` is the issues plus pull requests stored so far. `expected` is an estimate:
GitHub's issue listing holds issues and pull requests alike, so its length is what the whole
sync should store; it is read from the Link header's rel="last" (pages x page size, an upper
bound) and becomes exact once the last page arrives. Once the pulls listing has begun, the
stored issues plus its length count as well, and the larger of the two is used (they differ
only if the repository changed during the sync). 0 means not known yet (no rel="last").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import grpc
import sqlalchemy as sa
import structlog
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from polar.repository.v1 import events_pb2
from polar_db.engine import asyncpg_dsn
from polar_db.models import Organization, OrganizationStatus, Repository
from polar_kit.consumer import Consumer, Delivery, Handler, Reject, Retry
from polar_kit.errors import DomainError, FailedPrecondition
from polar_kit.nats import EVENTS
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import events, ingest
from .github import GitHubApp, GitHubError, GitHubGone, Page, RateLimitPolicy
from .settings import RepositorySettings

log = structlog.get_logger(__name__)

LOCK_NAMESPACE = b"polar.repository.sync:"


class SyncUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class SyncNotConfigured(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "the GitHub sync is not configured: set POLAR_GITHUB_APP_ID and the App's private key"
        )


class SyncStopped(Exception):
    """The process is shutting down: the sync ends after the page in hand."""


class LockLost(Exception):
    """The advisory lock's connection went away: another replica may be syncing now."""


def lock_key(repository_id: uuid.UUID) -> int:
    """The advisory lock key (bigint) of a repository's sync; namespaced by hashing so it
    cannot collide with other users of advisory locks in the same database."""
    digest = hashlib.sha256(LOCK_NAMESPACE + repository_id.bytes).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Target:
    repository_id: uuid.UUID
    organization_id: uuid.UUID
    owner: str
    name: str
    installation_id: int


@dataclass
class Listing:
    """What is known of one GitHub listing's length."""

    seen: int = 0
    total: int | None = None  # exact after the last page, else an upper bound, None: unknown
    page_size: int = 0

    def add(self, page: Page) -> None:
        self.seen += len(page.items)
        if not page.has_next:
            self.total = self.seen
            return
        self.page_size = self.page_size or len(page.items)  # a page with a next one is full
        if page.last_page is not None:
            self.total = max(page.last_page * self.page_size, self.seen)


@dataclass
class SyncResult:
    issues: int = 0
    pull_requests: int = 0
    issue_listing: Listing = field(default_factory=Listing)
    pull_listing: Listing = field(default_factory=Listing)

    @property
    def synced(self) -> int:
        return self.issues + self.pull_requests

    @property
    def expected(self) -> int:
        estimates = []
        if self.issue_listing.total is not None:
            estimates.append(self.issue_listing.total)
        if self.pull_listing.total is not None:
            estimates.append(self.issues + self.pull_listing.total)
        return max(self.synced, *estimates) if estimates else 0


class SyncRunner:
    """Runs syncs in the background; a polar_kit Worker (`run(stop)`) for graceful shutdown.

    `start` is what SyncRepository and the install consumers call. `sync` runs one in the
    caller's task (tests, scripts) and `join` waits for the background ones.
    """

    def __init__(
        self,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        *,
        max_concurrent: int = 4,
        grace_seconds: float = 10.0,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._sessionmaker = sessionmaker
        self._github = github
        self._grace = grace_seconds
        self._slots = asyncio.Semaphore(max_concurrent)
        self._stopping = asyncio.Event()
        self._claimed: set[uuid.UUID] = set()  # syncs of this process, queued or running
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._conn: asyncpg.Connection | None = None  # holds this runner's advisory locks
        self._conn_pid = 0
        self._conn_guard = asyncio.Lock()  # one query at a time on that connection

    @classmethod
    def from_settings(
        cls, settings: RepositorySettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> SyncRunner:
        github = GitHubApp(
            settings.github_api_url,
            settings.github_app_id,
            settings.github_private_key(),
            timeout=settings.github_timeout_seconds,
            policy=RateLimitPolicy(
                max_wait=settings.github_rate_limit_max_wait_seconds,
                low_remaining=settings.github_rate_limit_low_remaining,
            ),
        )
        return cls(
            settings.database_url,
            sessionmaker,
            github,
            max_concurrent=settings.sync_max_concurrent,
            grace_seconds=settings.shutdown_grace_seconds,
        )

    @property
    def configured(self) -> bool:
        """False without a GitHub App id and private key: `start` then raises
        SyncNotConfigured (FAILED_PRECONDITION)."""
        return self._github.configured

    @property
    def running(self) -> frozenset[uuid.UUID]:
        return frozenset(self._claimed)

    # -- starting ---------------------------------------------------------------------------

    async def start(self, repository_id: uuid.UUID) -> bool:
        """Starts a sync in the background; False if one of this repository runs already,
        in this replica or another."""
        if not await self._claim(repository_id):
            return False
        task = asyncio.create_task(self._background(repository_id), name=f"sync {repository_id}")
        self._tasks[repository_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            # Only this task: a new sync of the repository may have started meanwhile.
            if self._tasks.get(repository_id) is done:
                del self._tasks[repository_id]

        task.add_done_callback(forget)
        return True

    async def sync(self, repository_id: uuid.UUID) -> SyncResult | None:
        """Syncs now, in the caller's task; None if a sync of it runs already. Raises what
        the sync raises (GitHubError, LockLost, SyncStopped)."""
        if not await self._claim(repository_id):
            return None
        return await self._execute(repository_id)

    async def join(self) -> None:
        """Waits for the background syncs started so far."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _claim(self, repository_id: uuid.UUID) -> bool:
        if not self._github.configured:
            raise SyncNotConfigured
        if self._stopping.is_set():
            raise SyncUnavailable("the service is shutting down; try again in a moment")
        # Claimed before awaiting: the advisory lock is re-entrant within one connection, so
        # it cannot tell two starts in this process apart.
        if repository_id in self._claimed:
            return False
        self._claimed.add(repository_id)
        try:
            locked = await self._locking("pg_try_advisory_lock", lock_key(repository_id))
        except (OSError, asyncpg.PostgresError) as e:
            self._claimed.discard(repository_id)
            raise SyncUnavailable(f"cannot take the sync lock: {e!r}") from e
        except BaseException:
            self._claimed.discard(repository_id)
            raise
        if not locked:
            self._claimed.discard(repository_id)
            log.info("sync already running elsewhere", repository_id=str(repository_id))
        return locked

    async def _background(self, repository_id: uuid.UUID) -> None:
        try:
            await self._execute(repository_id)
        except SyncStopped:
            log.info("sync interrupted by shutdown", repository_id=str(repository_id))
        except LockLost:
            log.error("sync stopped: its lock is lost", repository_id=str(repository_id))
        except GitHubError as e:
            log.warning("sync failed", repository_id=str(repository_id), error=str(e))
        except asyncio.CancelledError:
            log.info("sync cancelled", repository_id=str(repository_id))
            raise
        except Exception:
            log.exception("sync crashed", repository_id=str(repository_id))

    async def _execute(self, repository_id: uuid.UUID) -> SyncResult | None:
        key = lock_key(repository_id)
        try:
            async with self._slots:
                self._check_stopping()
                return await self._sync(repository_id, key)
        finally:
            self._claimed.discard(repository_id)
            with contextlib.suppress(Exception):  # a lost connection released it already
                await asyncio.shield(self._locking("pg_advisory_unlock", key))

    # -- the advisory lock connection -------------------------------------------------------

    async def _locking(self, function: str, key: int) -> bool:
        async with self._conn_guard:
            for attempt in (1, 2):
                conn = self._conn
                if conn is None or conn.is_closed():
                    if function == "pg_advisory_unlock":
                        return False  # the connection is gone, and every lock it held
                    conn = await asyncpg.connect(self._dsn)
                    self._conn, self._conn_pid = conn, conn.get_server_pid()
                try:
                    return bool(await conn.fetchval(f"SELECT {function}($1::bigint)", key))
                except Exception:
                    # Nothing but a broken connection fails these: drop it (its locks are gone
                    # already; their syncs notice at their next page) and connect once more.
                    self._conn = None
                    conn.terminate()
                    if attempt == 2 or function == "pg_advisory_unlock":
                        raise
        raise AssertionError("unreachable")

    async def _check_lock(self, session: AsyncSession, key: int) -> None:
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
        held = await session.scalar(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = :pid AND classid::bigint = :hi AND objid::bigint = :lo"
                " AND objsubid = 1 AND granted)"
            ),
            {"pid": self._conn_pid, "hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF},
        )
        if not held:
            raise LockLost(f"advisory lock {key} is no longer held")

    # -- the sync ---------------------------------------------------------------------------

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise SyncStopped

    async def _sleep(self, seconds: float) -> None:
        """Rate-limit waits and backoffs; ends early (SyncStopped) on shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        self._check_stopping()

    async def _target(self, repository_id: uuid.UUID) -> Target | None:
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    sa.select(Repository, Organization)
                    .join(Organization, Organization.id == Repository.organization_id)
                    .where(
                        Repository.id == repository_id,
                        Repository.deleted_at.is_(None),
                        Organization.deleted_at.is_(None),
                    )
                )
            ).one_or_none()
        if row is None:
            log.warning("sync skipped: no such repository", repository_id=str(repository_id))
            return None
        repo, org = row
        if org.installation_id is None or org.status == OrganizationStatus.suspended:
            log.warning(
                "sync skipped: the GitHub App is not installed or suspended there",
                repository_id=str(repository_id),
                organization=org.name,
            )
            return None
        return Target(repo.id, org.id, org.name, repo.name, org.installation_id)

    async def _sync(self, repository_id: uuid.UUID, key: int) -> SyncResult | None:
        target = await self._target(repository_id)
        if target is None:
            return None
        bound = log.bind(repository_id=str(repository_id), repository=target.name)
        bound.info("sync started", owner=target.owner)
        result = SyncResult()
        async with self._github.installation(target.installation_id, sleep=self._sleep) as gh:
            ids = {"organization_id": target.organization_id, "repository_id": target.repository_id}
            issue_pages = _tolerate_gone(gh.issues(target.owner, target.name), result.issue_listing)
            async for page in issue_pages:
                rows = ingest.issue_rows(page.items, **ids)  # without the pull requests
                result.issue_listing.add(page)
                async with self._page(target, key, result) as session:
                    # ingest records issue_created/updated for the rows it writes.
                    await ingest.upsert_issues(session, rows)
                    result.issues += len(rows)
            async for page in gh.pulls(target.owner, target.name):
                rows = ingest.pull_request_rows(page.items, **ids)
                result.pull_listing.add(page)
                async with self._page(target, key, result) as session:
                    await ingest.upsert_pull_requests(session, rows)
                    result.pull_requests += len(rows)
        async with self._sessionmaker.begin() as session:
            await self._check_lock(session, key)
            await events.sync_completed(
                session,
                repository_id=target.repository_id,
                organization_id=target.organization_id,
                issues=result.issues,
                pull_requests=result.pull_requests,
            )
        bound.info("sync completed", issues=result.issues, pull_requests=result.pull_requests)
        return result

    @contextlib.asynccontextmanager
    async def _page(
        self, target: Target, key: int, result: SyncResult
    ) -> AsyncIterator[AsyncSession]:
        """One page's transaction: lock check, the caller's writes, then the progress event
        (recorded after the caller has counted the page in `result`)."""
        self._check_stopping()
        async with self._sessionmaker.begin() as session:
            await self._check_lock(session, key)
            yield session
            await events.sync_progress(
                session,
                repository_id=target.repository_id,
                organization_id=target.organization_id,
                synced=result.synced,
                expected=result.expected,
            )

    # -- Worker -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; then running syncs end after their page in hand (or are cancelled
        after the grace period), and the lock connection closes, releasing every lock."""
        await stop.wait()
        await self.close()

    async def close(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self._grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        async with self._conn_guard:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


async def _tolerate_gone(pages: AsyncIterator[Page], listing: Listing) -> AsyncIterator[Page]:
    """GitHub answers 410 Gone for the issues of a repository with issues disabled: that is
    an empty listing, not a failure (its pull requests still sync)."""
    try:
        async for page in pages:
            yield page
    except GitHubGone as e:
        if e.status != 410:
            raise
        listing.total = listing.seen


# -- sync on install ----------------------------------------------------------------------------


def on_repository_created(runner: SyncRunner) -> Handler:
    """A sync for each repository we learn of (installation.created,
    installation_repositories.added, BatchUpsertRepositories). It runs off the published
    event rather than inside the webhook's transaction, so the repository row is committed by
    the time the sync reads it, and the durable consumer hands each event to one replica."""

    async def handle(session: AsyncSession, delivery: Delivery) -> None:
        try:
            created = events_pb2.RepositoryCreated.FromString(delivery.data)
            repository_id = uuid.UUID(created.repository.id)
        except (DecodeError, ValueError) as e:
            raise Reject(f"not a RepositoryCreated event: {e!r}") from e
        try:
            await runner.start(repository_id)  # False: one runs already, fine too
        except SyncNotConfigured:
            log.info("no sync on install: the GitHub App is not configured")
        except SyncUnavailable as e:
            raise Retry(str(e)) from e  # shutting down: another replica, or later

    return handle


def sync_on_install_consumer(
    runner: SyncRunner,
    settings: RepositorySettings,
    js: JetStreamContext,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Consumer:
    return Consumer(
        "repository-sync-on-create",
        EVENTS,
        [events.REPOSITORY_CREATED],
        on_repository_created(runner),
        sessionmaker=sessionmaker,
        js=js,
        settings=settings,
    )
