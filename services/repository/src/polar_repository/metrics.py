"""Prometheus metrics of the GitHub sync (the shared runtime's are polar_kit.metrics'; the
table of all and the alerts on them: docs/operations.md)."""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

SYNC_PAGES = Counter(
    "polar_github_sync_pages_total",
    "Pages of a GitHub listing stored by a sync, by listing (pulls, issues).",
    ["listing"],
)
SYNC_ROWS = Counter(
    "polar_github_sync_rows_total",
    "Rows stored by a sync, by kind (issue, pull_request).",
    ["kind"],
)
SYNCS_RUNNING = Gauge("polar_github_syncs_running", "Syncs running in this process.")
SYNC_IDLE = Gauge(
    "polar_github_sync_idle_seconds",
    "Longest time a running sync of this process has gone without storing a page (since it "
    "started, if it has stored none); 0 when none runs.",
)
SYNCS = Counter(
    "polar_github_syncs_total",
    "Sync attempts ended, by outcome (completed or the failure reason).",
    ["outcome"],
)
RATE_LIMIT_REMAINING = Gauge(
    "polar_github_rate_limit_remaining",
    "GitHub's x-ratelimit-remaining on the last answer (the installation of the last request).",
)
WAIT_SECONDS = Histogram(
    "polar_github_wait_seconds",
    "Waits before a GitHub request, by reason: rate_limited (a 403/429 told us to), pacing "
    "(few requests left before the reset), backoff (a 5xx or network failure).",
    ["reason"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900),
)

PAGES = {listing: SYNC_PAGES.labels(listing) for listing in ("pulls", "issues")}
ROWS = {kind: SYNC_ROWS.labels(kind) for kind in ("pull_request", "issue")}
WAITS = {reason: WAIT_SECONDS.labels(reason) for reason in ("rate_limited", "pacing", "backoff")}
# completed, or sync_progress.Reason's values (not imported: sync_progress imports github,
# which imports this module)
OUTCOMES = {
    outcome: SYNCS.labels(outcome)
    for outcome in (
        "completed",
        "rate_limited",
        "access_revoked",
        "repository_gone",
        "github_unavailable",
        "internal",
    )
}
RATE_LIMIT_REMAINING.set(float("nan"))  # unknown until GitHub answers


class SyncActivity:
    """The running syncs of this process and when each last stored a page."""

    def __init__(self) -> None:
        self._last: dict[Hashable, float] = {}

    @contextmanager
    def running(self, key: Hashable) -> Iterator[None]:
        self._last[key] = time.monotonic()
        try:
            yield
        finally:
            self._last.pop(key, None)

    def progressed(self, key: Hashable) -> None:
        if key in self._last:
            self._last[key] = time.monotonic()

    def count(self) -> int:
        return len(self._last)

    def idle_seconds(self) -> float:
        return time.monotonic() - min(self._last.values()) if self._last else 0.0


ACTIVITY = SyncActivity()  # one per process, whatever the number of runners
SYNCS_RUNNING.set_function(ACTIVITY.count)
SYNC_IDLE.set_function(ACTIVITY.idle_seconds)


def page_stored(key: Hashable, listing: str, kind: str, rows: int) -> None:
    """A page of the sync `key` (its repository id) is stored (counted before the commit)."""
    PAGES[listing].inc()
    ROWS[kind].inc(rows)
    ACTIVITY.progressed(key)


def sync_ended(outcome: str) -> None:
    (OUTCOMES.get(outcome) or SYNCS.labels(outcome)).inc()


def rate_limit_seen(headers: Mapping[str, str]) -> None:
    value = headers.get("x-ratelimit-remaining")
    if value is not None and value.isdigit():
        RATE_LIMIT_REMAINING.set(int(value))
