"""GitHub sync of a repository's issues and pull requests: durable jobs, resumed and retried.

A sync is requested (repository created, SyncRepository, the periodic schedule) by writing
its job row (sync_jobs.py) in the requester's transaction, so it exists once the request is
acknowledged (decision 0013). Every replica runs a SyncRunner: it wakes on the row's NOTIFY
(or polls), claims due jobs and runs them in background tasks. One sync per repository at a
time, across replicas: a sync holds its repository's advisory lock (sync_locks.py), and
every page's transaction first checks it still does, so if the runner's connection drops
(or the process dies), the sync stops before writing anything more and whichever replica
claims the job next resumes it. The job's counters and failure policy are sync_progress.py.

A sync pages through GET /repos/{owner}/{repo}/pulls, then /issues (skipping the pull
requests GitHub lists there, but taking their `comments`, which /pulls lacks), and stores
each page in one transaction: the upserted rows (through ingest, whose updated_at guard
keeps a newer webhook's data), their events, a sync_progress event, and the job's new
position (listing and next page). A crash therefore loses at most the page in hand, and the
resumed sync repeats nothing that was committed. sync_completed follows the last page; a
failed attempt records sync_failed with its reason and, unless final, when it is retried
(decision 0014): transient failures back off for hours, a far rate-limit reset reschedules
the job at the reset, a refused token is final (access revoked), and a 404 removes the
repository (repository_deleted) and ends the job. An item that cannot be stored is skipped,
counted and listed (ids and reason) on the job and in sync_completed.

Progress: `synced` counts the items processed (stored or skipped); `expected` is a lower
bound of what the whole sync processes, from the listings' Link rel="last" (every page but
the last is full), and never decreases within a job. The issue listing holds the issues and
pull requests alike, so once it has begun it estimates the whole sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from polar.repository.v1 import events_pb2
from polar_db.engine import asyncpg_dsn
from polar_db.models import OrganizationStatus, Repository, SyncJob, SyncStatus
from polar_db.upsert import Upserted
from polar_kit import tracing
from polar_kit.consumer import Consumer, Delivery, Handler, Reject
from polar_kit.errors import FailedPrecondition
from polar_kit.nats import EVENTS
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import events, ingest, metrics, sync_jobs
from .github import (
    AccessRevoked,
    GitHubApp,
    GitHubError,
    GitHubGone,
    InstallationClient,
    RateLimited,
)
from .settings import RepositorySettings
from .sync_locks import LockLost, SyncLocks, lock_key
from .sync_progress import MALFORMED, Failure, Progress, Reason, RetryPolicy, describe, refused

log = structlog.get_logger(__name__)


class SyncNotConfigured(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "the GitHub sync is not configured: set POLAR_GITHUB_APP_ID and the App's private key"
        )


class SyncStopped(Exception):
    """The process is shutting down: the sync ends after the page in hand."""


@dataclass(frozen=True)
class Target:
    repository_id: uuid.UUID
    organization_id: uuid.UUID
    owner: str
    name: str
    installation_id: int
    job_id: uuid.UUID
    since: datetime | None


Store = Callable[[AsyncSession, Sequence[ingest.Row]], Awaitable[Sequence[Upserted[Any]]]]


class SyncRunner:
    """Runs due sync jobs in the background; a polar_kit Worker (`run(stop)`).

    `start(session, repository_id)` (service.SyncStarter) queues a sync in the caller's
    transaction. `sync(repository_id)` queues one and runs it in the caller's task, and
    `run_due()` runs every due job now (tests, scripts).
    """

    def __init__(
        self,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        *,
        max_concurrent: int = 4,
        grace_seconds: float = 10.0,
        poll_seconds: float = 5.0,
        retry: RetryPolicy | None = None,
        interval_seconds: int = 0,
        pull_request_details: bool = True,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._github = github
        self._grace = grace_seconds
        self._poll = poll_seconds
        self._retry = retry or RetryPolicy()
        self._interval = interval_seconds
        self._pull_details = pull_request_details
        self._max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._claimed: set[uuid.UUID] = set()  # syncs of this process, queued or running
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._locks = SyncLocks(asyncpg_dsn(database_url), self._wake.set)

    @classmethod
    def from_settings(
        cls, settings: RepositorySettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> SyncRunner:
        github = GitHubApp.from_settings(settings)
        return cls(
            settings.database_url,
            sessionmaker,
            github,
            max_concurrent=settings.sync_max_concurrent,
            grace_seconds=settings.shutdown_grace_seconds,
            poll_seconds=settings.sync_poll_seconds,
            retry=RetryPolicy(
                settings.sync_retry_base_seconds,
                settings.sync_retry_max_seconds,
                settings.sync_max_attempts,
            ),
            interval_seconds=settings.sync_interval_seconds,
            pull_request_details=settings.sync_pull_request_details,
        )

    @property
    def configured(self) -> bool:
        """False without a GitHub App id and private key: `start` then raises
        SyncNotConfigured (FAILED_PRECONDITION)."""
        return self._github.configured

    @property
    def running(self) -> frozenset[uuid.UUID]:
        return frozenset(self._claimed)

    # -- requesting ---------------------------------------------------------------------------

    async def start(
        self, session: AsyncSession, repository_id: uuid.UUID, *, trigger: str = "request"
    ) -> bool:
        """Queues a full sync in the caller's transaction (it runs once that commits); False
        when one is queued or running already."""
        if not self.configured:
            raise SyncNotConfigured
        return await sync_jobs.request(session, repository_id, trigger=trigger)

    async def sync(self, repository_id: uuid.UUID) -> SyncJob | None:
        """Queues a sync (unless one is pending) and runs it now in the caller's task; returns
        the job as it ends, or None if another task or replica holds it."""
        async with self._sessionmaker.begin() as session:
            await self.start(session, repository_id)
        if not await self._claim(repository_id):
            return None
        return await self._execute(repository_id)

    async def run_due(self) -> None:
        """Claims every due job this runner can and waits for them."""
        await self._spawn_due()
        await self.join()

    async def join(self) -> None:
        """Waits for the background syncs started so far."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- the worker ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: claims due jobs (on NOTIFY, when a sync ends, or every poll), and
        queues the periodic syncs. Then running syncs end after their page in hand (or are
        cancelled after the grace period); their jobs stay due, for any replica to resume."""
        if not self.configured:
            log.info("GitHub sync off: no GitHub App configured")
            await stop.wait()
            return
        stopped = asyncio.create_task(stop.wait())
        next_schedule = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    if self._interval and time.monotonic() >= next_schedule:
                        await self._schedule()
                        next_schedule = time.monotonic() + min(60.0, self._interval / 10)
                    await self._spawn_due()
                except Exception as e:
                    log.warning("sync poll failed, retrying", error=describe(e))
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {stopped, woken}, timeout=self._poll, return_when="FIRST_COMPLETED"
                )
                woken.cancel()
        finally:
            stopped.cancel()
            await self.close()

    async def _schedule(self) -> None:
        async with self._sessionmaker.begin() as session:
            queued = await sync_jobs.schedule(
                session, interval=self._interval, margin=int(self._poll) + 300
            )
        if queued:
            log.info("periodic syncs queued", count=queued)

    async def _spawn_due(self) -> None:
        await self._locks.listen()  # listening for NOTIFY from here on
        free = self._max_concurrent - len(self._tasks)
        if free <= 0 or self._stopping.is_set():
            return
        # Due jobs include those other replicas are running (their rows say running until
        # they end): look further than the free slots, and skip those whose lock is taken.
        async with self._sessionmaker() as session:
            due = await sync_jobs.due(
                session, limit=self._max_concurrent * 10, exclude=self._claimed
            )
        for repository_id in due:
            if free <= 0:
                return
            if await self._claim(repository_id):
                self._spawn(repository_id)
                free -= 1

    def _spawn(self, repository_id: uuid.UUID) -> None:
        # A fresh context: the sync's log lines carry its own context, never the one of
        # whatever woke the runner.
        task = asyncio.create_task(
            self._background(repository_id),
            name=f"sync {repository_id}",
            context=contextvars.Context(),
        )
        self._tasks[repository_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(repository_id) is done:
                del self._tasks[repository_id]
            self._wake.set()  # a slot is free

        task.add_done_callback(forget)

    async def _background(self, repository_id: uuid.UUID) -> None:
        try:
            await self._execute(repository_id)
        except asyncio.CancelledError:
            log.info("sync cancelled", repository_id=str(repository_id))
            raise
        except Exception as e:  # the job stays due: the next poll tries again
            log.error("sync not run", repository_id=str(repository_id), error=describe(e))

    async def _claim(self, repository_id: uuid.UUID) -> bool:
        if self._stopping.is_set():
            return False
        # Claimed before awaiting: the advisory lock is re-entrant within one connection, so
        # it cannot tell two claims in this process apart.
        if repository_id in self._claimed:
            return False
        self._claimed.add(repository_id)
        try:
            locked = await self._locks.try_lock(lock_key(repository_id))
        except BaseException:
            self._claimed.discard(repository_id)
            raise
        if not locked:
            self._claimed.discard(repository_id)
        return locked

    # -- one job ------------------------------------------------------------------------------

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise SyncStopped

    async def _sleep(self, seconds: float) -> None:
        """Rate-limit waits and backoffs; ends early (SyncStopped) on shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        self._check_stopping()

    async def _execute(self, repository_id: uuid.UUID) -> SyncJob | None:
        """Runs the repository's job if it is due (its lock is held); returns the job."""
        key = lock_key(repository_id)
        try:
            async with self._slots:
                with (
                    structlog.contextvars.bound_contextvars(repository_id=str(repository_id)),
                    tracing.span("sync", repository_id=str(repository_id)),  # one trace a sync
                ):
                    return await self._run_job(repository_id, key)
        finally:
            self._claimed.discard(repository_id)
            with contextlib.suppress(Exception):  # a lost connection released it already
                await asyncio.shield(self._locks.unlock(key))

    async def _run_job(self, repository_id: uuid.UUID, key: int) -> SyncJob | None:
        async with self._sessionmaker() as session:
            job = await sync_jobs.get(session, repository_id, due=True)
            found = await sync_jobs.target(session, repository_id)
        if job is None or found is None or self._stopping.is_set():
            return job  # not due (done meanwhile by another replica), or shutting down
        repo, org = found
        target = Target(
            repo.id, org.id, org.name, repo.name, org.installation_id or 0, job.job_id, job.since
        )
        with structlog.contextvars.bound_contextvars(
            job_id=str(job.job_id), repository=f"{org.name}/{repo.name}"
        ):
            progress = Progress.of(job)
            failure: Failure | None = None
            try:
                if repo.deleted_at is not None or org.deleted_at is not None:
                    raise Failure(Reason.REPOSITORY_GONE, "the repository was deleted", final=True)
                if org.installation_id is None or org.status == OrganizationStatus.suspended:
                    raise Failure(
                        Reason.ACCESS_REVOKED,
                        f"the GitHub App is not installed on {org.name} or is suspended there",
                        final=True,
                    )
                with metrics.ACTIVITY.running(repository_id):
                    await self._attempt(target, key, job, progress)
            except Failure as failed:
                failure = failed
            except SyncStopped:
                log.info("sync interrupted by shutdown; it resumes", page=progress.next_page)
            except LockLost:
                log.warning("sync stopped: its lock is lost; another replica may resume it")
            if failure is not None:
                try:
                    await self._fail(target, key, job, failure)
                except LockLost:
                    log.warning("sync failure not recorded: its lock is lost")
        async with self._sessionmaker() as session:
            return await sync_jobs.get(session, repository_id)

    async def _attempt(self, target: Target, key: int, job: SyncJob, progress: Progress) -> None:
        """One attempt, from the job's last stored page; raises Failure when it fails."""
        async with self._sessionmaker.begin() as session:
            await self._locks.check(session, key)
            await sync_jobs.update(
                session,
                target.repository_id,
                target.job_id,
                status=SyncStatus.running,
                started_at=sa.func.coalesce(SyncJob.started_at, sa.func.now()),
            )
        resumed = job.status == SyncStatus.running or job.pages > 0
        log.info(
            "sync resumed" if resumed else "sync started",
            trigger=job.trigger,
            incremental=job.since is not None,
            phase=progress.phase,
            page=progress.next_page,
            attempt=job.attempts + 1,
        )
        try:
            async with self._github.installation(target.installation_id, sleep=self._sleep) as gh:
                if progress.phase == "pulls":
                    await self._pulls(gh, target, key, progress)
                if progress.phase == "issues":
                    await self._issues(gh, target, key, progress)
            await self._complete(target, key, progress)
        except RateLimited as e:
            raise Failure(Reason.RATE_LIMITED, str(e), retry_in=e.wait) from e
        except AccessRevoked as e:
            raise Failure(Reason.ACCESS_REVOKED, str(e), final=True) from e
        except GitHubGone as e:
            raise Failure(Reason.REPOSITORY_GONE, str(e), final=True) from e
        except GitHubError as e:
            raise Failure(Reason.GITHUB_UNAVAILABLE, str(e)) from e
        except (SyncStopped, LockLost, Failure, asyncio.CancelledError):
            raise
        except Exception as e:
            log.error("sync attempt crashed", error=describe(e))
            raise Failure(Reason.INTERNAL, describe(e)) from e

    async def _pulls(
        self, gh: InstallationClient, target: Target, key: int, progress: Progress
    ) -> None:
        since = target.since
        pages = gh.pulls(
            target.owner, target.name, recently_updated=since is not None, page=progress.next_page
        )
        async for page in pages:
            rows, older = [], False
            for item in page.items:
                try:
                    row = ingest.pull_request_row(item, **self._ids(target))
                except MALFORMED as e:
                    progress.skip("pull_request", item, f"{type(e).__name__}: {e}")
                    continue
                if since is not None and row["issue_modified_at"] < since:
                    older = True  # most recently updated first: the rest is older still
                    continue
                rows.append(row)
            if self._pull_details:
                rows = await self._with_details(gh, target, rows, progress)
            last = older or not page.has_next
            async with self._page(target, key, progress) as session:
                stored = await self._store(
                    session, ingest.upsert_pull_requests, rows, "pull_request", progress
                )
                progress.pull_requests += stored
                metrics.page_stored(target.repository_id, "pulls", "pull_request", stored)
                progress.paged(page, last=last, estimate=since is None)
                if last:
                    progress.next_listing("issues")
            if last:
                return

    async def _with_details(
        self,
        gh: InstallationClient,
        target: Target,
        rows: list[ingest.Row],
        progress: Progress,
    ) -> list[ingest.Row]:
        """The listing's rows, those new or changed since stored replaced by GitHub's full
        object (commits, additions, comments...: what a webhook stores); one request each."""
        async with self._sessionmaker() as session:
            wanted = await sync_jobs.pull_requests_without_details(session, rows)
        completed = []
        for row in rows:
            if row["external_id"] in wanted:
                full = await gh.pull_request(target.owner, target.name, row["number"])
                if full is not None and full.get("id") == row["external_id"]:
                    try:
                        row = ingest.pull_request_row(full, **self._ids(target))
                    except MALFORMED as e:  # the listing's row is still good
                        log.warning(
                            "pull request details unreadable",
                            id=row["external_id"],
                            reason=f"{type(e).__name__}: {e}"[:200],
                        )
            completed.append(row)
        return completed

    async def _issues(
        self, gh: InstallationClient, target: Target, key: int, progress: Progress
    ) -> None:
        since = target.since.isoformat() if target.since is not None else None
        pages = gh.issues(target.owner, target.name, since=since, page=progress.next_page)
        try:
            async for page in pages:
                rows, comments = [], []
                for item in page.items:
                    try:
                        if ingest.is_pull_request(item):
                            number, count = item.get("number"), item.get("comments")
                            if isinstance(number, int) and isinstance(count, int):
                                updated_at = ingest.parse_time(item.get("updated_at"))
                                comments.append(
                                    {"number": number, "comments": count, "updated_at": updated_at}
                                )
                            continue
                        rows.append(ingest.issue_row(item, **self._ids(target)))
                    except MALFORMED as e:
                        progress.skip("issue", item, f"{type(e).__name__}: {e}")
                async with self._page(target, key, progress) as session:
                    stored = await self._store(
                        session, ingest.upsert_issues, rows, "issue", progress
                    )
                    progress.issues += stored
                    metrics.page_stored(target.repository_id, "issues", "issue", stored)
                    changed = await sync_jobs.update_pull_request_comments(
                        session, target.repository_id, comments
                    )
                    await events.pull_requests_upserted(
                        session, [Upserted(pr, False) for pr in changed]
                    )
                    progress.paged(page, last=not page.has_next, estimate=True)
        except GitHubGone as e:
            if e.status != 410:
                raise
            # GitHub answers 410 Gone for the issues of a repository with issues disabled:
            # an empty listing, not a failure (its pull requests are synced already).

    @staticmethod
    def _ids(target: Target) -> dict[str, uuid.UUID]:
        return {"organization_id": target.organization_id, "repository_id": target.repository_id}

    async def _store(
        self,
        session: AsyncSession,
        store: Store,
        rows: Sequence[ingest.Row],
        kind: str,
        progress: Progress,
    ) -> int:
        """Stores a page's rows; if the database refuses the page (a value it cannot hold),
        stores them one by one and skips those it refuses. Returns how many were stored."""
        if not rows:
            return 0
        try:
            async with session.begin_nested():
                self._written(kind, await store(session, rows), progress)
            return len(rows)
        except DBAPIError as e:
            if not refused(e):
                raise
        stored = 0
        for row in rows:
            try:
                async with session.begin_nested():
                    self._written(kind, await store(session, [row]), progress)
                stored += 1
            except DBAPIError as e:
                if not refused(e):
                    raise
                item = {"id": row.get("external_id"), "number": row.get("number")}
                reason = str(e.orig).splitlines()[0] if e.orig else type(e).__name__
                progress.skip(kind, item, f"the database refused it: {reason}")
        return stored

    @staticmethod
    def _written(kind: str, written: Sequence[Upserted[Any]], progress: Progress) -> None:
        if kind == "issue" and written:
            progress.last_issue = (str(written[-1].row.id), written[-1].row.title)

    @contextlib.asynccontextmanager
    async def _page(
        self, target: Target, key: int, progress: Progress
    ) -> AsyncIterator[AsyncSession]:
        """One page's transaction: lock check, the caller's writes, then the job's new
        position and the progress event (after the caller has counted the page)."""
        self._check_stopping()
        with tracing.span("sync page", page=progress.pages + 1):
            async with self._sessionmaker.begin() as session:
                await self._locks.check(session, key)
                yield session
                await sync_jobs.update(
                    session, target.repository_id, target.job_id, **progress.columns()
                )
                await events.sync_progress(
                    session,
                    repository_id=target.repository_id,
                    organization_id=target.organization_id,
                    job_id=target.job_id,
                    synced=progress.synced,
                    expected=progress.expected,
                    page=progress.pages,
                    pages=progress.pages_expected,
                    issue=progress.last_issue,
                )

    async def _complete(self, target: Target, key: int, progress: Progress) -> None:
        async with self._sessionmaker.begin() as session:
            await self._locks.check(session, key)
            await sync_jobs.update(
                session,
                target.repository_id,
                target.job_id,
                status=SyncStatus.completed,
                run_at=None,
                finished_at=sa.func.now(),
                last_success_started_at=SyncJob.started_at,
                failure_reason=None,
                failure_message=None,
                phase="done",
            )
            await events.sync_completed(
                session,
                repository_id=target.repository_id,
                organization_id=target.organization_id,
                job_id=target.job_id,
                issues=progress.issues,
                pull_requests=progress.pull_requests,
                skipped=progress.skipped_count,
                skipped_items=progress.skipped,
            )
        metrics.sync_ended("completed")
        log.info(
            "sync completed",
            issues=progress.issues,
            pull_requests=progress.pull_requests,
            skipped=progress.skipped_count,
        )

    async def _fail(self, target: Target, key: int, job: SyncJob, failure: Failure) -> None:
        """Records a failed attempt (sync_failed) and when the job runs again, if it does."""
        attempts = job.attempts
        retry_in = failure.retry_in
        if retry_in is None and not failure.final:
            attempts += 1
            retry_in = self._retry.delay(attempts)
        async with self._sessionmaker.begin() as session:
            await self._locks.check(session, key)
            now = await session.scalar(sa.select(sa.func.now()))
            assert now is not None
            retry_at = now + timedelta(seconds=retry_in) if retry_in is not None else None
            current = await sync_jobs.update(
                session,
                target.repository_id,
                target.job_id,
                status=SyncStatus.failed,
                run_at=retry_at,
                attempts=attempts,
                failure_reason=failure.reason,
                failure_message=failure.message[:1000],
                finished_at=None if retry_at else now,
            )
            if failure.reason == Reason.REPOSITORY_GONE:
                # No longer visible to the App: removed as when the installation loses it
                # (issues and pull requests kept; a re-add brings it back).
                await ingest.delete_repositories(
                    session, Repository.id == target.repository_id, content=False
                )
            await events.sync_failed(
                session,
                repository_id=target.repository_id,
                organization_id=target.organization_id,
                job_id=target.job_id,
                reason=failure.reason,
                message=failure.message,
                retry_at=retry_at,
                issues=current.issues if current else 0,
                pull_requests=current.pull_requests if current else 0,
            )
        metrics.sync_ended(failure.reason)
        log.warning(
            "sync failed",
            reason=failure.reason,
            error=failure.message[:300],
            attempts=attempts,
            retry_at=retry_at.isoformat() if retry_at else None,
        )

    async def close(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self._grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._locks.close()


# -- sync on install ----------------------------------------------------------------------------


def on_repository_created(runner: SyncRunner) -> Handler:
    """A sync for each repository we learn of (installation.created,
    installation_repositories.added, BatchUpsertRepositories). Its job row is written in
    this message's transaction, so the event is acknowledged only once the job is recorded;
    running off the published event means the repository row is committed by then."""

    async def handle(session: AsyncSession, delivery: Delivery) -> None:
        try:
            created = events_pb2.RepositoryCreated.FromString(delivery.data)
            repository_id = uuid.UUID(created.repository.id)
        except (DecodeError, ValueError) as e:
            raise Reject(f"not a RepositoryCreated event: {e!r}") from e
        try:
            await runner.start(session, repository_id, trigger="created")
        except SyncNotConfigured:
            log.info("no sync on install: the GitHub App is not configured")

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
