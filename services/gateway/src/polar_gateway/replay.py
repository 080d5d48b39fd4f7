"""Where a live stream starts, and what of the past it may show (Last-Event-ID).

Policy: a reconnecting client gets back what it missed, but never more than
`stream_replay_seconds` (1 hour by default; 0 turns replay off) and never an organization's
events from before the user joined it — JetStream keeps 30 days of every organization's
events, including other members' names and ids, which a new member must not read.

- Last-Event-ID within the window: resume exactly after it (a stream sequence).
- Older (or unknown): resume at the window's start, skipping what the client already had.
- Joining: the user's `member_added` events in the replayed span (JetStream filters them by
  subject) give, per organization, the sequence the user joined at; the stream's Channels
  drop that organization's earlier events. A membership older than the span needs nothing.
- No Last-Event-ID: new events only, as before.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from polar import catalog
from polar.organization.v1 import events_pb2 as organization_events
from polar_kit.nats import EVENTS, subject_for

from .settings import GatewaySettings


@dataclass
class Replay:
    policy: DeliverPolicy = DeliverPolicy.NEW
    start_sequence: int | None = None
    start_time: datetime | None = None
    skip_before: int = 0  # messages with a lower stream sequence were the client's already
    joined: dict[str, int] = field(default_factory=dict)  # organization -> joined at (seq)

    def consumer_config(self) -> ConsumerConfig:
        # The server deletes the consumer this long after its connection went.
        return ConsumerConfig(
            inactive_threshold=10,
            deliver_policy=self.policy,
            opt_start_seq=self.start_sequence,
            opt_start_time=self.start_time,
        )


async def plan(
    js: JetStreamContext, settings: GatewaySettings, user_id: str, start: int | None
) -> Replay:
    """The replay of a stream asked to resume at sequence `start` (None: no resume)."""
    if start is None or settings.stream_replay_seconds == 0:
        return Replay()
    floor = datetime.now(UTC) - timedelta(seconds=settings.stream_replay_seconds)
    recent = False
    with contextlib.suppress(nats.js.errors.NotFoundError):
        found = await js.get_msg(EVENTS.stream_name(settings.nats_prefix), seq=start)
        recent = found.time is not None and found.time >= floor
    if recent:
        replay = Replay(DeliverPolicy.BY_START_SEQUENCE, start_sequence=start)
    else:
        replay = Replay(DeliverPolicy.BY_START_TIME, start_time=floor, skip_before=start)
    replay.joined = await _joined(js, settings, user_id, replay)
    return replay


async def _joined(
    js: JetStreamContext, settings: GatewaySettings, user_id: str, replay: Replay
) -> dict[str, int]:
    sub = await js.subscribe(
        subject_for(settings, catalog.MEMBER_ADDED.subject),
        stream=EVENTS.stream_name(settings.nats_prefix),
        ordered_consumer=True,
        deliver_policy=replay.policy,
        config=replay.consumer_config(),
    )
    joined: dict[str, int] = {}
    try:
        # Read to the message after which nothing was pending. Not a count taken up front:
        # messages already on their way were in neither the server's pending count nor ours,
        # and a membership missed here would replay its organization's history from before
        # the user joined. A read that times out raises (the stream answers 503).
        info = await sub.consumer_info()
        sent = info.delivered.consumer_seq if info.delivered is not None else 0
        more = bool(info.num_pending or sent)
        while more:
            msg = await sub.next_msg(timeout=settings.grpc_deadline_seconds)
            more = msg.metadata.num_pending > 0
            event = organization_events.MemberAdded()
            with contextlib.suppress(DecodeError):
                event.ParseFromString(msg.data)
                if event.member.user_id == user_id:
                    joined[event.member.organization_id] = msg.metadata.sequence.stream
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        # Deleted now rather than after its inactivity threshold: consumers are limited.
        with contextlib.suppress(nats.errors.Error):
            await js.delete_consumer(EVENTS.stream_name(settings.nats_prefix), sub._consumer)
    return joined
