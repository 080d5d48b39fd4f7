"""What a sync job knows of itself: its position and counters (Progress), why an attempt
failed (Failure, Reason) and when it is tried again (RetryPolicy). Pure: no I/O."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import structlog
from polar_db.models import SyncJob
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .github import Page
from .ingest import InvalidObject

log = structlog.get_logger(__name__)

# An item GitHub sent that we cannot turn into a row.
MALFORMED = (InvalidObject, KeyError, TypeError, ValueError, AttributeError)
MAX_LISTED_SKIPS = 100  # skipped items named on the job and in sync_completed; all counted


class Reason:
    """Failure reasons (sync_jobs.failure_reason; SyncFailureReason in the contract)."""

    RATE_LIMITED = "rate_limited"
    ACCESS_REVOKED = "access_revoked"
    REPOSITORY_GONE = "repository_gone"
    GITHUB_UNAVAILABLE = "github_unavailable"
    INTERNAL = "internal"


def refused(error: DBAPIError) -> bool:
    """The database refused a value (not an outage, which must fail the attempt)."""
    return not error.connection_invalidated and not isinstance(
        error, OperationalError | InterfaceError
    )


def describe(error: BaseException) -> str:
    """An error for a log line or a job row: its type, message (cut short: messages may
    quote what GitHub sent) and where it was raised; never the frames' locals."""
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
    return f"{type(error).__name__}: {str(error)[:200]}{at}"


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 30.0
    max: float = 3600.0
    max_attempts: int = 12

    def delay(self, attempts: int) -> float | None:
        """Seconds before the next attempt after `attempts` failed ones; None: give up."""
        if attempts >= self.max_attempts:
            return None
        return float(min(self.base * 2 ** (attempts - 1), self.max))


class Failure(Exception):
    """An attempt's end other than success: why, and whether and when to try again."""

    def __init__(
        self, reason: str, message: str, *, retry_in: float | None = None, final: bool = False
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_in = retry_in  # set: at that time, not counted as an attempt
        self.final = final


@dataclass
class Progress:
    """The job's position and counters (mirrors its sync_jobs columns)."""

    phase: str
    next_page: int
    page_size: int
    listed: int
    pages: int
    pages_expected: int
    issues: int
    pull_requests: int
    expected: int
    skipped_count: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    # (id, title) of the last issue stored by this process (progress events name it).
    last_issue: tuple[str, str] | None = None

    COLUMNS = (
        "phase",
        "next_page",
        "page_size",
        "listed",
        "pages",
        "pages_expected",
        "issues",
        "pull_requests",
        "expected",
        "skipped_count",
        "skipped",
    )

    @classmethod
    def of(cls, job: SyncJob) -> Progress:
        return cls(**{c: getattr(job, c) for c in cls.COLUMNS})

    def columns(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in self.COLUMNS}

    @property
    def synced(self) -> int:
        return self.issues + self.pull_requests + self.skipped_count

    def skip(self, kind: str, item: Any, reason: str) -> None:
        get = item.get if isinstance(item, dict) else (lambda _key: None)
        ids = {k: v for k in ("id", "number") if isinstance(v := get(k), int)}
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"kind": kind, **ids, "reason": reason[:200]})
        log.warning("item skipped", kind=kind, id=ids.get("id"), reason=reason[:200])

    def paged(self, page: Page, *, last: bool, estimate: bool) -> None:
        """Counts a stored page: pages, the listing's length, the estimates."""
        before = self.pages - (page.number - 1)  # pages of the listings before this one
        self.pages += 1
        self.listed += len(page.items)
        if page.has_next and not self.page_size:
            self.page_size = len(page.items)  # a page with a next one is full
        total, pages = self.listed, page.number
        if not last:
            pages += 1
            if estimate and page.last_page is not None:
                # Every page before the last is full, the last has at least one item.
                total = max(total, (page.last_page - 1) * self.page_size + 1)
                pages = page.last_page
        self.pages_expected = max(self.pages_expected, before + pages, self.pages)
        self.expected = max(self.expected, total if estimate else 0, self.synced)
        self.next_page = page.number + 1

    def next_listing(self, phase: str) -> None:
        self.phase, self.next_page, self.page_size, self.listed = phase, 1, 0, 0
