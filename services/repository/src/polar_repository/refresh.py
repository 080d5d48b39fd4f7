"""Re-reading one issue or pull request from GitHub: how a same-second tie is settled.

GitHub's updated_at has one-second resolution: two edits within one second carry the same
time, and when their webhooks arrive out of order the stored version may be the older one.
The webhook consumer stores neither over the other (see ingest.upsert_issues) and calls
`Refresher.refresh`, which reads the object through the App's installation and stores
GitHub's answer: the current state, so it wins the tie (docs/decisions/0008).

In the background of this process, not durable: if the process dies first, the version
stored first stays until the object's next edit or sync.
"""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
import structlog
from polar_db.models import OrganizationStatus
from polar_db.models.repository import KnownOrganization, Repository
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import ingest
from .github import GitHubApp
from .settings import RepositorySettings

log = structlog.get_logger(__name__)


class Refresher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        *,
        max_concurrent: int = 4,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._github = github
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls, settings: RepositorySettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> Refresher:
        github = GitHubApp.from_settings(settings)
        return cls(sessionmaker, github, max_concurrent=settings.sync_max_concurrent)

    @property
    def configured(self) -> bool:
        """False without a GitHub App: nobody to ask (the delivery handled last wins)."""
        return self._github.configured

    def refresh(self, repository_id: uuid.UUID, kind: str, number: int) -> None:
        """Re-read issue (`kind` "issues") or pull request ("pulls") `number` of a
        repository from GitHub, in the background, and store it."""
        task = asyncio.create_task(
            self._refresh(repository_id, kind, number), name=f"refresh {kind} {number}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Waits for the refreshes started so far."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _refresh(self, repository_id: uuid.UUID, kind: str, number: int) -> None:
        bound = log.bind(repository_id=str(repository_id), kind=kind, number=number)
        try:
            async with self._sessionmaker() as session:
                row = (
                    await session.execute(
                        sa.select(Repository, KnownOrganization)
                        .join(KnownOrganization, KnownOrganization.id == Repository.organization_id)
                        .where(Repository.id == repository_id, Repository.deleted_at.is_(None))
                    )
                ).one_or_none()
            if row is None:
                return
            repo, org = row
            if org.installation_id is None or org.status == OrganizationStatus.suspended:
                return
            async with self._slots, self._github.installation(org.installation_id) as gh:
                response = await gh.get(f"/repos/{org.name}/{repo.name}/{kind}/{number}")
            ids = {"organization_id": org.id, "repository_id": repo.id}
            async with self._sessionmaker.begin() as session:
                if kind == "pulls":
                    row_ = ingest.pull_request_row(response.json(), **ids)
                    await ingest.upsert_pull_requests(session, [row_])
                else:
                    await ingest.upsert_issues(session, [ingest.issue_row(response.json(), **ids)])
            bound.info("same-second tie settled by GitHub")
        except Exception as e:
            bound.warning("same-second tie not settled", error=repr(e))
