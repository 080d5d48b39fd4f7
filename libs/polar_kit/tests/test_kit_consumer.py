from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from nats.js import JetStreamContext
from polar_db.models import ProcessedMessage
from polar_kit import parked
from polar_kit.consumer import Consumer, Delivery, Handler, Reject, Retry
from polar_kit.nats import WEBHOOKS, publish, subject_for
from polar_kit.settings import ServiceSettings
from polar_kit.testing import eventually
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clean_db")]

Sessionmaker = async_sessionmaker[AsyncSession]


class Recorder:
    """A handler whose behaviour the test sets; records each delivery it sees."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[float, Delivery]] = []
        self.fail: Exception | None = None

    async def __call__(self, session: AsyncSession, delivery: Delivery) -> None:
        self.deliveries.append((time.monotonic(), delivery))
        await session.execute(select(1))  # the handler runs in the transaction
        if self.fail is not None:
            raise self.fail

    async def count(self, n: int) -> None:
        async def reached() -> bool:
            return len(self.deliveries) >= n

        await eventually(reached)


@asynccontextmanager
async def running(
    name: str,
    handler: Handler,
    filters: list[str],
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    settings: ServiceSettings,
) -> AsyncIterator[Consumer]:
    consumer = Consumer(
        name, WEBHOOKS, filters, handler, sessionmaker=sessionmaker, js=js, settings=settings
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def send(
    js: JetStreamContext,
    settings: ServiceSettings,
    subject: str,
    body: bytes,
    msg_id: str | None = None,
    **headers: str,
) -> None:
    await publish(
        js,
        subject_for(settings, subject),
        body,
        msg_id=msg_id or uuid.uuid4().hex,
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


async def processed(sessionmaker: Sessionmaker, consumer: str) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).where(ProcessedMessage.consumer == consumer)
        return int(await session.scalar(query) or 0)


async def test_handles_a_message_once_even_when_delivered_twice(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = Recorder()
    subject = f"github.webhook.{token}.created"
    async with running(token, handler, [subject], sessionmaker, js, kit_settings):
        # Two stream messages, one logical message (e.g. GitHub redelivered it).
        await send(js, kit_settings, subject, b"1", Polar_Message_Id="delivery-1")
        await send(js, kit_settings, subject, b"1", Polar_Message_Id="delivery-1")
        await send(js, kit_settings, subject, b"2", Polar_Message_Id="delivery-2")
        await handler.count(2)
        await asyncio.sleep(0.5)  # room for a wrong third call
    assert [d.message_id for _, d in handler.deliveries] == ["delivery-1", "delivery-2"]
    first = handler.deliveries[0][1]
    assert first.subject == subject  # prefix stripped
    assert first.data == b"1"
    assert first.num_delivered == 1
    assert await processed(sessionmaker, token) == 2


async def test_retry_redelivers_after_the_delay(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = Recorder()
    handler.fail = Retry("installation not known yet", delay=0.6)
    subject = f"github.webhook.{token}.created"
    async with running(token, handler, [subject], sessionmaker, js, kit_settings):
        await send(js, kit_settings, subject, b"x")
        await handler.count(1)
        handler.fail = None
        await handler.count(2)
    (t1, d1), (t2, d2) = handler.deliveries
    assert t2 - t1 >= 0.5
    assert (d1.num_delivered, d2.num_delivered) == (1, 2)
    assert d1.message_id == d2.message_id
    assert await processed(sessionmaker, token) == 1  # the failed attempt rolled back


async def test_exhausted_attempts_park_the_message(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = Recorder()
    handler.fail = RuntimeError("bug")
    subject = f"github.webhook.{token}.created"
    async with running(token, handler, [subject], sessionmaker, js, kit_settings):
        await send(js, kit_settings, subject, b"payload", "gh-2", X_Foo="bar")

        async def is_parked() -> bool:
            return len(await parked.list_parked(js, kit_settings, token)) == 1

        await eventually(is_parked)
        await asyncio.sleep(0.7)  # > retry max: a further delivery would show up
    assert len(handler.deliveries) == kit_settings.consumer_max_attempts
    (p,) = await parked.list_parked(js, kit_settings, token)
    assert p.subject == subject_for(kit_settings, subject)
    assert p.message_id == "gh-2"
    assert p.attempts == str(kit_settings.consumer_max_attempts)
    assert "RuntimeError('bug')" in p.error
    assert p.data == b"payload"
    assert p.headers["X-Foo"] == "bar"
    assert await processed(sessionmaker, token) == 0


async def test_reject_parks_at_once_and_replay_delivers_again(
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = Recorder()
    handler.fail = Reject("malformed payload")
    subject = f"github.webhook.{token}.created"
    async with running(token, handler, [subject], sessionmaker, js, kit_settings):
        await send(js, kit_settings, subject, b"a", "gh-a")
        await send(js, kit_settings, subject, b"b", "gh-b")

        async def both_parked() -> bool:
            return len(await parked.list_parked(js, kit_settings, token)) == 2

        await eventually(both_parked)
        assert len(handler.deliveries) == 2  # no retries
        first, second = await parked.list_parked(js, kit_settings, token)
        assert first.attempts == "1"
        assert first.error == "rejected: malformed payload"

        # Fixed: replay one through the API, the rest through the CLI.
        handler.fail = None
        await parked.replay(js, kit_settings, first.seq)
        await handler.count(3)
        env = {
            **os.environ,
            "POLAR_NATS_URL": kit_settings.nats_url,
            "POLAR_NATS_PREFIX": kit_settings.nats_prefix,
        }
        listing = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polar_kit.parked", "list", "--consumer", token,
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await listing.communicate()
        assert listing.returncode == 0
        assert f"{second.seq}\t" in out.decode()
        assert "id=gh-b" in out.decode()
        monkeypatch.setenv("POLAR_NATS_URL", kit_settings.nats_url)
        monkeypatch.setenv("POLAR_NATS_PREFIX", kit_settings.nats_prefix)
        assert await parked.cli(["replay", "--all", "--consumer", token]) == 0
        assert "replayed 1 message(s)" in capsys.readouterr().out
        await handler.count(4)

    replayed = [d for _, d in handler.deliveries[2:]]
    assert sorted(d.message_id for d in replayed) == ["gh-a", "gh-b"]
    assert all(d.num_delivered == 1 for d in replayed)
    assert await parked.list_parked(js, kit_settings, token) == []
    assert await processed(sessionmaker, token) == 2


async def test_replay_of_a_handled_message_is_skipped(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    """Replay goes to the original subject, so every consumer of it sees the message again:
    the ones that handled it already skip it by its Polar-Message-Id."""
    subject = f"github.webhook.{token}.created"
    ok, failing = Recorder(), Recorder()
    failing.fail = Reject("not for me")
    async with (
        running(f"{token}-ok", ok, [subject], sessionmaker, js, kit_settings),
        running(f"{token}-bad", failing, [subject], sessionmaker, js, kit_settings),
    ):
        await send(js, kit_settings, subject, b"x", "gh-x")

        async def parked_once() -> bool:
            return len(await parked.list_parked(js, kit_settings, f"{token}-bad")) == 1

        await eventually(parked_once)
        failing.fail = None
        (p,) = await parked.list_parked(js, kit_settings, f"{token}-bad")
        await parked.replay(js, kit_settings, p.seq)
        await failing.count(2)
        await asyncio.sleep(0.5)
    assert len(ok.deliveries) == 1
    assert await processed(sessionmaker, f"{token}-ok") == 1
    assert await processed(sessionmaker, f"{token}-bad") == 1


async def test_several_filter_subjects(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = Recorder()
    wanted = [f"github.webhook.{token}.issues.>", f"github.webhook.{token}.repository.*"]
    async with running(token, handler, wanted, sessionmaker, js, kit_settings):
        base = f"github.webhook.{token}"
        await send(js, kit_settings, f"{base}.installation.created", b"no")
        await send(js, kit_settings, f"{base}.issues.opened", b"yes")
        await send(js, kit_settings, f"{base}.repository.created", b"yes")
        await handler.count(2)
        await asyncio.sleep(0.3)
    assert sorted(d.subject for _, d in handler.deliveries) == [
        f"github.webhook.{token}.issues.opened",
        f"github.webhook.{token}.repository.created",
    ]


async def test_messages_sent_while_down_arrive_after_restart(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = Recorder()
    subject = f"github.webhook.{token}.created"
    async with running(token, handler, [subject], sessionmaker, js, kit_settings):
        await send(js, kit_settings, subject, b"1")
        await handler.count(1)
    await send(js, kit_settings, subject, b"2")  # nobody is consuming
    async with running(token, handler, [subject], sessionmaker, js, kit_settings):
        await handler.count(2)
    assert [d.data for _, d in handler.deliveries] == [b"1", b"2"]


async def test_parked_list_says_so_when_empty_and_names_the_server(
    kit_settings: ServiceSettings,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POLAR_NATS_URL", kit_settings.nats_url)
    monkeypatch.setenv("POLAR_NATS_PREFIX", kit_settings.nats_prefix)
    assert await parked.cli(["list", "--consumer", token]) == 0
    expected = (
        f"no parked messages of {token} on {kit_settings.nats_url}"
        f" (prefix {kit_settings.nats_prefix!r})"
    )
    assert expected in capsys.readouterr().out.splitlines()
