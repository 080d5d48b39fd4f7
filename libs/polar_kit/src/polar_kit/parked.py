"""Operator tool for parked messages (messages a consumer gave up on).

    python -m polar_kit.parked list [--consumer C]
    python -m polar_kit.parked replay SEQ
    python -m polar_kit.parked replay --all [--consumer C]

Reads POLAR_NATS_URL and POLAR_NATS_PREFIX. Replay republishes the original data and headers
to the original subject with a fresh Nats-Msg-Id (otherwise JetStream's dedupe could drop
it) and the same Polar-Message-Id, so consumers that already handled it skip it; then it
deletes the parked copy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from polar_db.devenv import announce, load_dev_env

from polar_kit.consumer import PARKED_PREFIX
from polar_kit.nats import PARKED, connect, publish
from polar_kit.settings import ServiceSettings


@dataclass(frozen=True)
class ParkedMessage:
    seq: int
    consumer: str
    subject: str  # the original, full subject
    message_id: str
    error: str
    attempts: str
    parked_at: str
    data: bytes
    headers: dict[str, str]

    def replay_headers(self) -> dict[str, str]:
        return {
            k: v
            for k, v in self.headers.items()
            if not k.startswith(PARKED_PREFIX) and not k.startswith("Nats-")
        }


async def get_parked(js: JetStreamContext, settings: ServiceSettings, seq: int) -> ParkedMessage:
    raw = await js.get_msg(PARKED.stream_name(settings.nats_prefix), seq)
    headers = dict(raw.headers or {})

    def h(key: str) -> str:
        return str(headers.get(PARKED_PREFIX + key, ""))

    return ParkedMessage(
        seq=seq,
        consumer=h("Consumer"),
        subject=h("Subject"),
        message_id=str(headers.get("Polar-Message-Id", "")),
        error=h("Error"),
        attempts=h("Attempts"),
        parked_at=h("At"),
        data=raw.data or b"",
        headers=headers,
    )


async def list_parked(
    js: JetStreamContext, settings: ServiceSettings, consumer: str | None = None
) -> list[ParkedMessage]:
    # Parked messages are few (each one is an incident): reading them one by one is fine.
    try:
        info = await js.stream_info(PARKED.stream_name(settings.nats_prefix))
    except nats.js.errors.NotFoundError:
        return []  # nothing was ever parked
    found = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                parked = await get_parked(js, settings, seq)
            except nats.js.errors.NotFoundError:
                continue  # replayed (deleted) already
            if consumer is None or parked.consumer == consumer:
                found.append(parked)
    return found


async def replay(js: JetStreamContext, settings: ServiceSettings, seq: int) -> PubAck:
    parked = await get_parked(js, settings, seq)
    if not parked.subject:
        raise ValueError(f"parked message {seq} has no {PARKED_PREFIX}Subject header")
    ack = await publish(
        js, parked.subject, parked.data, msg_id=uuid.uuid4().hex, headers=parked.replay_headers()
    )
    await js.delete_msg(PARKED.stream_name(settings.nats_prefix), seq)
    return ack


async def replay_all(
    js: JetStreamContext, settings: ServiceSettings, consumer: str | None = None
) -> int:
    parked = await list_parked(js, settings, consumer)
    for p in parked:
        await replay(js, settings, p.seq)
    return len(parked)


async def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_kit.parked", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show parked messages")
    p_list.add_argument("--consumer")
    p_replay = sub.add_parser("replay", help="republish parked messages to their subject")
    p_replay.add_argument("seq", nargs="?", type=int)
    p_replay.add_argument("--all", action="store_true")
    p_replay.add_argument("--consumer", help="with --all: only this consumer's messages")
    args = parser.parse_args(argv)
    if args.command == "replay" and (args.seq is None) == (not args.all):
        parser.error("replay takes either SEQ or --all")

    dev_env = load_dev_env()
    settings = ServiceSettings()
    announce("nats", settings.nats_url, "POLAR_NATS_URL", dev_env)
    nc = await connect(settings, name="polar-parked")
    try:
        js = nc.jetstream()
        if args.command == "list":
            found = await list_parked(js, settings, args.consumer)
            for p in found:
                print(
                    f"{p.seq}\t{p.parked_at}\t{p.consumer}\tattempts={p.attempts}\t"
                    f"{p.subject}\tid={p.message_id}\t{p.error}"
                )
            if not found:
                # Say where: a wrong POLAR_NATS_URL or POLAR_NATS_PREFIX would look the same.
                of = f" of {args.consumer}" if args.consumer else ""
                prefix = f" (prefix {settings.nats_prefix!r})" if settings.nats_prefix else ""
                print(f"no parked messages{of} on {settings.nats_url}{prefix}")
        elif args.all:
            print(f"replayed {await replay_all(js, settings, args.consumer)} message(s)")
        else:
            ack = await replay(js, settings, args.seq)
            print(f"replayed {args.seq} as {ack.stream} #{ack.seq}")
    finally:
        await nc.close()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(cli(argv)))


if __name__ == "__main__":
    main()
