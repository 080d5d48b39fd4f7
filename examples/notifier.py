"""Print the new issues and rewards of one organization as they happen.

Written only from docs/asyncapi.yaml and libs/polar_events/README.md. Against `make dev`
(run from the checkout, it finds the NATS URL in .dev/env; elsewhere set POLAR_NATS_URL):

    uv run python examples/notifier.py <organization id>

`--since 2026-11-30T08:00:00Z` replays from a time first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import nats
from polar.repository.v1.events_pb2 import IssueCreated
from polar.reward.v1.events_pb2 import RewardCreated
from polar_events import Event, Subscriber


def describe(event: Event[Any], organization_id: str) -> str | None:
    """One line for an event of the organization, None for any other."""
    message = event.message
    if isinstance(message, IssueCreated) and message.issue.organization_id == organization_id:
        return f"new issue #{message.issue.number}: {message.issue.title}"
    if isinstance(message, RewardCreated) and message.reward.organization_id == organization_id:
        amount = message.reward.amount
        money = f"{amount.minor_units / 100:.2f} {amount.currency}"
        return f"new reward: {money} on issue {message.reward.issue_id}"
    return None


async def notify(
    nats_url: str,
    organization_id: str,
    *,
    prefix: str = "",
    since: datetime | None = None,
    out: Callable[[str], None] = print,
) -> None:
    """Runs until cancelled."""
    nc = await nats.connect(nats_url)
    subscriber = Subscriber(nc, prefix=prefix)

    async def handler(event: Event[Any]) -> None:
        line = describe(event, organization_id)
        if line is not None:
            out(line)

    subscription = await subscriber.subscribe(
        handler, IssueCreated, RewardCreated, start_time=since
    )
    try:
        await asyncio.Event().wait()
    finally:
        await subscription.stop()
        await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("organization_id")
    parser.add_argument("--since", type=datetime.fromisoformat, default=None)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):  # inside this repository: `make dev`'s .dev/env
        from polar_db.devenv import load_dev_env

        load_dev_env()
    url = os.environ.get("POLAR_NATS_URL", "nats://127.0.0.1:4222")
    prefix = os.environ.get("POLAR_NATS_PREFIX", "")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(notify(url, args.organization_id, prefix=prefix, since=args.since))


if __name__ == "__main__":
    main()
