"""Riding out a database or NATS outage: capped backoff, and logs that stay small.

An outage makes every attempt fail the same way, many times a second across consumers and
relays. Each `Outage` logs its start as one line (no traceback: the condition is expected
and the error says it all), a one-line summary while it lasts (every `summary_seconds`),
and its end with how long it took and how many attempts failed.
"""

from __future__ import annotations

import time

import structlog

from polar_kit.errors import causes

log = structlog.get_logger(__name__)


def brief(exc: BaseException) -> str:
    """`Type: first line of the message` of the most telling error in the cause chain (the
    driver's error, with its SQLSTATE, rather than SQLAlchemy's wrapper)."""
    coded = [e for e in causes(exc) if getattr(e, "sqlstate", None)]
    inner = coded[-1] if coded else exc
    lines = str(inner).strip().splitlines()
    text = f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__
    code = getattr(inner, "sqlstate", None)
    return (f"[{code}] {text}" if code else text)[:300]


class Outage:
    def __init__(self, what: str, *, base: float, cap: float, summary_seconds: float = 30) -> None:
        self.what = what
        self._base = base
        self._cap = cap
        self._summary_seconds = summary_seconds
        self.failures = 0
        self._since = 0.0
        self._logged = 0.0

    @property
    def ongoing(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException, **context: object) -> float:
        """Record a failed attempt; returns how long to wait before the next one."""
        now = time.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._since = self._logged = now
            log.warning(f"{self.what} unavailable, retrying", error=brief(exc), **context)
        elif now - self._logged >= self._summary_seconds:
            self._logged = now
            log.warning(
                f"{self.what} still unavailable",
                error=brief(exc),
                failures=self.failures,
                seconds=round(now - self._since, 1),
                **context,
            )
        return float(min(self._base * 2 ** (self.failures - 1), self._cap))

    def recovered(self) -> None:
        if self.failures:
            log.info(
                f"{self.what} available again",
                failures=self.failures,
                seconds=round(time.monotonic() - self._since, 1),
            )
            self.failures = 0
