"""Prometheus metrics of the GitHub sync (the shared runtime's are polar_kit.metrics'; the
table of all and the alerts on them: docs/operations.md)."""

from __future__ import annotations

from collections.abc import Mapping

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


def page_stored(listing: str, kind: str, rows: int) -> None:
    PAGES[listing].inc()
    ROWS[kind].inc(rows)


def sync_ended(outcome: str) -> None:
    (OUTCOMES.get(outcome) or SYNCS.labels(outcome)).inc()


def rate_limit_seen(headers: Mapping[str, str]) -> None:
    value = headers.get("x-ratelimit-remaining")
    if value is not None and value.isdigit():
        RATE_LIMIT_REMAINING.set(int(value))
