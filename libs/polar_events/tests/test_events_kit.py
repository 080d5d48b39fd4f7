"""The subscriber kit against a real NATS: typed events, replay, retry and park.

Events are published as Polar's outbox relay publishes them (polar_kit.outbox's CloudEvents
headers on the POLAR_EVENTS stream), under this run's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from polar import catalog
from polar.organization.v1 import events_pb2 as org_events
from polar.repository.v1 import events_pb2 as repo_events
from polar.repository.v1 import repository_pb2
from polar.reward.v1 import events_pb2 as reward_events
from polar.reward.v1 import reward_pb2
from polar_events import Event, Park, Retry, Subscriber
from polar_kit.nats import PARKED, ensure_streams
from polar_kit.settings import ServiceSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "notifier.py"


@pytest_asyncio.fixture(loop_scope="session")
async def settings(
    database_url: str, nats_url: str, nats_prefix: str, js: JetStreamContext
) -> ServiceSettings:
    settings = ServiceSettings(
        database_url=database_url, nats_url=nats_url, nats_prefix=nats_prefix, dev_mode=True
    )
    await ensure_streams(js, settings)
    return settings


async def publish(js: JetStreamContext, prefix: str, message: Any) -> int:
    """One event as the outbox relay publishes it; returns its stream sequence."""
    event_id = str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": message.DESCRIPTOR.full_name,
        "ce-source": "/polar/test",
        "ce-time": datetime.now(UTC).isoformat(),
        "content-type": "application/protobuf",
        "Nats-Msg-Id": event_id,
    }
    ack = await js.publish(
        prefix + catalog.subject_of(message), message.SerializeToString(), headers=headers
    )
    return int(ack.seq)


def issue(title: str) -> repo_events.IssueCreated:
    return repo_events.IssueCreated(issue=repository_pb2.Issue(id=str(uuid.uuid4()), title=title))


async def until(condition: Any, within: float = 10) -> None:
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s")


async def test_typed_events_of_the_chosen_types_only(
    nc: Client, js: JetStreamContext, settings: ServiceSettings
) -> None:
    prefix = settings.nats_prefix
    got: list[Event[Any]] = []

    async def handler(event: Event[Any]) -> None:
        got.append(event)

    subscriber = Subscriber(nc, prefix=prefix)
    sub = await subscriber.subscribe(handler, repo_events.IssueCreated, reward_events.RewardCreated)
    try:
        await publish(js, prefix, issue("first"))
        await publish(js, prefix, repo_events.IssueUpdated())  # not subscribed
        await publish(js, prefix, reward_events.RewardCreated(reward=reward_pb2.Reward(id="r")))
        await until(lambda: len(got) == 2)
    finally:
        await sub.stop()
    first, reward = got
    assert isinstance(first.message, repo_events.IssueCreated)
    assert first.message.issue.title == "first"
    assert (first.type, first.subject) == (
        "polar.repository.v1.IssueCreated",
        "polar.repository.v1.issue_created",
    )
    assert first.source == "/polar/test"
    assert first.time is not None
    assert first.attempt == 1
    assert isinstance(reward.message, reward_events.RewardCreated)
    assert reward.message.reward.id == "r"


async def test_replay_from_a_sequence_and_a_durable_position(
    nc: Client, js: JetStreamContext, settings: ServiceSettings
) -> None:
    prefix = settings.nats_prefix
    start = await publish(js, prefix, issue("old-1"))
    await publish(js, prefix, issue("old-2"))
    titles: list[str] = []

    async def handler(event: Event[repo_events.IssueCreated]) -> None:
        titles.append(event.message.issue.title)

    subscriber = Subscriber(nc, prefix=prefix)
    durable = f"kit-{uuid.uuid4().hex[:8]}"
    sub = await subscriber.subscribe(
        handler, repo_events.IssueCreated, durable=durable, start_sequence=start
    )
    await until(lambda: titles[-1:] == ["old-2"])
    await sub.stop()
    await publish(js, prefix, issue("while-away"))
    sub = await subscriber.subscribe(handler, repo_events.IssueCreated, durable=durable)
    try:
        await until(lambda: titles[-1:] == ["while-away"])
    finally:
        await sub.stop()
    assert titles == ["old-1", "old-2", "while-away"]


async def test_retry_then_park(nc: Client, js: JetStreamContext, settings: ServiceSettings) -> None:
    prefix = settings.nats_prefix
    attempts: dict[str, int] = {}

    async def handler(event: Event[org_events.MemberRemoved]) -> None:
        user = event.message.user_id
        attempts[user] = event.attempt
        if user == "not-yet" and event.attempt < 3:
            raise Retry("not yet", delay=0.05)
        if user == "poison":
            raise Park("this one never works")

    durable = f"kit-{uuid.uuid4().hex[:8]}"
    parked = await js.subscribe(f"{prefix}parked.{durable}", stream=PARKED.stream_name(prefix))
    subscriber = Subscriber(nc, prefix=prefix)
    sub = await subscriber.subscribe(handler, org_events.MemberRemoved, durable=durable)
    try:
        await publish(js, prefix, org_events.MemberRemoved(user_id="not-yet"))
        await publish(js, prefix, org_events.MemberRemoved(user_id="poison"))
        copy = await parked.next_msg(timeout=10)
        await until(lambda: attempts.get("not-yet") == 3)
    finally:
        await sub.stop()
        await parked.unsubscribe()
    assert org_events.MemberRemoved.FromString(copy.data).user_id == "poison"
    assert copy.headers is not None
    assert copy.headers["Polar-Parked-Consumer"] == durable
    assert copy.headers["Polar-Parked-Error"] == "this one never works"
    assert copy.headers["ce-type"] == "polar.organization.v1.MemberRemoved"


async def test_the_example_notifier_prints_one_organizations_issues_and_rewards(
    js: JetStreamContext, settings: ServiceSettings, nats_url: str
) -> None:
    spec = importlib.util.spec_from_file_location("notifier", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    notifier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(notifier)

    prefix = settings.nats_prefix
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    lines: list[str] = []
    since = datetime.now(UTC)
    await publish(
        js,
        prefix,
        repo_events.IssueCreated(
            issue=repository_pb2.Issue(organization_id=ours, number=7, title="Crash on start")
        ),
    )
    await publish(
        js,
        prefix,
        repo_events.IssueCreated(issue=repository_pb2.Issue(organization_id=theirs, title="x")),
    )
    task = asyncio.create_task(
        notifier.notify(nats_url, ours, prefix=prefix, since=since, out=lines.append)
    )
    try:
        await until(lambda: len(lines) == 1)  # replayed from `since`
        reward = reward_pb2.Reward(organization_id=ours, issue_id="i-7")
        reward.amount.currency, reward.amount.minor_units = "USD", 2500
        await publish(js, prefix, reward_events.RewardCreated(reward=reward))
        await until(lambda: len(lines) == 2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert lines == ["new issue #7: Crash on start", "new reward: 25.00 USD on issue i-7"]
