"""Webhook ingress: signature, content checks, JetStream publish with dedupe, 503 without NATS."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import WEBHOOK_SECRET, StartGateway, sign
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from polar_dev.infra import EmbeddedNats, free_port
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway
from polar_kit.nats import WEBHOOKS
from polar_kit.testing import count_messages

URL = "/api/v2/integrations/github/webhook"


def delivery_headers(
    body: bytes, event: str = "issues", delivery: str | None = None, **extra: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body),
        **extra,
    }


def unique_action() -> str:
    # A subject of its own per test, so counting its messages counts only ours.
    return f"t{secrets.token_hex(6)}"


async def stored(
    js: JetStreamContext, settings: GatewaySettings, subject: str
) -> list[tuple[bytes, dict[str, str]]]:
    sub = await js.pull_subscribe(
        settings.nats_prefix + subject,
        stream=WEBHOOKS.stream_name(settings.nats_prefix),
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=5
        ),
    )
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        messages = await sub.fetch(pending, timeout=2) if pending else []
        return [(m.data, dict(m.headers or {})) for m in messages]
    finally:
        await sub.unsubscribe()


async def test_a_signed_delivery_is_stored_before_202(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    github_fixtures: Path,
) -> None:
    payload = json.loads((github_fixtures / "webhooks/issues/opened.payload.json").read_text())
    payload["action"] = action = unique_action()
    body = json.dumps(payload, indent=1).encode()  # raw bytes, exactly as sent
    delivery = str(uuid.uuid4())
    response = await client.post(
        URL, content=body, headers=delivery_headers(body, delivery=delivery)
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "delivery": delivery, "duplicate": False}
    # The 202 came after the PubAck: the message is already there.
    [(data, headers)] = await stored(js, gateway_settings, f"github.webhook.issues.{action}")
    assert data == body
    assert headers["Nats-Msg-Id"] == delivery
    assert headers["X-GitHub-Delivery"] == delivery
    assert headers["X-GitHub-Event"] == "issues"


async def test_a_redelivery_is_stored_once(
    client: httpx.AsyncClient, js: JetStreamContext, gateway_settings: GatewaySettings
) -> None:
    action = unique_action()
    body = json.dumps({"action": action, "issue": {"id": 1}}).encode()
    headers = delivery_headers(body)
    first = await client.post(URL, content=body, headers=headers)
    second = await client.post(URL, content=body, headers=headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    subject = f"github.webhook.issues.{action}"
    assert await count_messages(js, gateway_settings, WEBHOOKS, subject) == 1


async def test_events_without_an_action(
    client: httpx.AsyncClient, js: JetStreamContext, gateway_settings: GatewaySettings
) -> None:
    event = unique_action()
    body = b'{"ref": "refs/heads/main"}'
    response = await client.post(URL, content=body, headers=delivery_headers(body, event=event))
    assert response.status_code == 202
    assert len(await stored(js, gateway_settings, f"github.webhook.{event}")) == 1


async def test_ping_is_200_and_not_published(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    github_fixtures: Path,
) -> None:
    body = (github_fixtures / "webhooks/ping/payload.json").read_bytes()
    response = await client.post(URL, content=body, headers=delivery_headers(body, event="ping"))
    assert response.status_code == 200
    assert response.json()["status"] == "pong"
    assert await count_messages(js, gateway_settings, WEBHOOKS, "github.webhook.ping.>") == 0
    assert await count_messages(js, gateway_settings, WEBHOOKS, "github.webhook.ping") == 0


def _bad_requests() -> list[tuple[str, bytes, dict[str, str], int, str]]:
    good = json.dumps({"action": "opened"}).encode()
    cases = [
        ("no signature", good, {"X-Hub-Signature-256": ""}, 401, "invalid_signature"),
        (
            "wrong signature",
            good,
            {"X-Hub-Signature-256": sign(good, "other")},
            401,
            "invalid_signature",
        ),
        (
            "sha1 signature",
            good,
            {"X-Hub-Signature-256": "sha1=" + "0" * 40},
            401,
            "invalid_signature",
        ),
        ("text body", good, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (
            "form body",
            good,
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ("no event", good, {"X-GitHub-Event": ""}, 400, "bad_request"),
        ("odd event", good, {"X-GitHub-Event": "issues.*"}, 400, "bad_request"),
        ("no delivery", good, {"X-GitHub-Delivery": ""}, 400, "bad_request"),
        ("odd delivery", good, {"X-GitHub-Delivery": "a b"}, 400, "bad_request"),
    ]
    for name, body in (
        ("malformed json", b'{"action": "opened"'),
        ("json array", b"[1, 2]"),
        ("odd action", b'{"action": "opened.>"}'),
        ("action not a string", b'{"action": 5}'),
    ):
        code = "bad_request" if "action" in name else "malformed_json"
        cases.append((name, body, {"X-Hub-Signature-256": sign(body)}, 400, code))
    return [(name, body, headers, status, code) for name, body, headers, status, code in cases]


@pytest.mark.parametrize(
    ("name", "body", "overrides", "status", "code"),
    _bad_requests(),
    ids=[c[0] for c in _bad_requests()],
)
async def test_bad_deliveries_are_4xx_and_not_published(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    name: str,
    body: bytes,
    overrides: dict[str, str],
    status: int,
    code: str,
) -> None:
    event = unique_action()
    headers = delivery_headers(body, event=event) | overrides
    headers = {k: v for k, v in headers.items() if v}
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await count_messages(js, gateway_settings, WEBHOOKS, f"github.webhook.{event}.>") == 0


async def _raw_post(
    url: str, head: dict[str, str], chunks: AsyncIterator[bytes]
) -> tuple[int, int]:
    """POST over a plain socket, sending until the server answers: (status, bytes sent).
    (httpx would finish sending the body before it reads the answer.)"""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"POST {URL} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in head.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = asyncio.create_task(reader.readline())
    sent = 0
    try:
        async for chunk in chunks:
            if answer.done():
                break
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
        status_line = await asyncio.wait_for(answer, 10)
    except (ConnectionError, OSError):
        status_line = await asyncio.wait_for(answer, 10)
    finally:
        writer.close()
    return int(status_line.split()[1]), sent


async def test_an_oversize_delivery_is_413_by_its_declared_length(
    gateway: RunningGateway,
) -> None:
    async def nothing() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.5)  # the answer comes before any byte of the body
        yield b"{}"

    headers = delivery_headers(b"{}") | {"Content-Length": str(25 * 1024 * 1024 + 1)}
    status, sent = await _raw_post(gateway.url, headers, nothing())
    assert status == 413
    assert sent == 0


async def test_an_oversize_chunked_delivery_is_cut_off_at_the_limit(
    start_gateway: StartGateway,
) -> None:
    total = 32 * 1024 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        chunk = b"x" * 65536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        for _ in range(total // len(chunk)):
            yield framed
        yield b"0\r\n\r\n"

    async with start_gateway(webhook_max_body_bytes=256 * 1024) as small:
        headers = delivery_headers(b"") | {"Transfer-Encoding": "chunked"}
        status, sent = await _raw_post(small.url, headers, chunks())
    assert status == 413
    assert sent < total, sent  # it stopped reading long before the end


async def test_a_body_at_the_limit_is_accepted(start_gateway: StartGateway) -> None:
    limit = 64 * 1024
    body = json.dumps({"action": unique_action(), "pad": ""}).encode()
    body = body[:-2] + b"x" * (limit - len(body)) + b'"}'
    assert len(body) == limit
    async with (
        start_gateway(webhook_max_body_bytes=limit) as small,
        httpx.AsyncClient(base_url=small.url) as http,
    ):
        response = await http.post(URL, content=body, headers=delivery_headers(body))
        assert response.status_code == 202
        too_big = body[:-2] + b'x"}'
        response = await http.post(URL, content=too_big, headers=delivery_headers(too_big))
        assert response.status_code == 413


async def test_a_delivery_nats_cannot_store_is_413_not_503(gateway: RunningGateway) -> None:
    """The configured limit (25 MiB by default) is capped by the server's max_payload, read
    at connect (1 MiB for a default nats-server): a 2 MiB delivery could never be stored,
    so GitHub is told 413 (do not redeliver) rather than 503 (try again later)."""
    assert gateway.gateway.settings.webhook_max_body_bytes > 2 * 1024 * 1024
    body = json.dumps({"action": unique_action(), "pad": "x" * (2 * 1024 * 1024)}).encode()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post(URL, content=body, headers=delivery_headers(body))
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["error"]["message"]


async def test_nats_unreachable_is_503(start_gateway: StartGateway) -> None:
    closed = f"nats://127.0.0.1:{free_port()}"
    async with (
        start_gateway(nats_url=closed, wait_for_nats=False) as cut_off,
        httpx.AsyncClient(base_url=cut_off.url) as http,
    ):
        body = b'{"action": "opened"}'
        response = await http.post(URL, content=body, headers=delivery_headers(body))
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert response.json()["error"]["code"] == "unavailable"
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["nats"] is False


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", free_port())
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_nats_going_down_is_503_and_coming_back_is_202(
    start_gateway: StartGateway, own_nats: EmbeddedNats
) -> None:
    async with (
        start_gateway(nats_url=own_nats.url) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):

        async def post() -> httpx.Response:
            body = json.dumps({"action": "opened", "n": uuid.uuid4().hex}).encode()
            return await http.post(URL, content=body, headers=delivery_headers(body))

        assert (await post()).status_code == 202
        await asyncio.to_thread(own_nats.stop)
        statuses: list[Any] = []
        for _ in range(50):
            statuses.append((await post()).status_code)
            if statuses[-1] == 503:
                break
            await asyncio.sleep(0.1)
        assert statuses[-1] == 503
        assert 202 not in statuses[1:]  # nothing accepted once it was gone... except in flight
        await asyncio.to_thread(own_nats.start)
        for _ in range(100):
            if (await post()).status_code == 202:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the gateway did not recover when NATS came back")


async def test_send_webhooks_command(
    gateway: RunningGateway, github_fixtures: Path, tmp_path: Path
) -> None:
    from polar_gateway.send_webhooks import main

    (tmp_path / "ping").mkdir()
    (tmp_path / "ping" / "payload.json").write_bytes(
        (github_fixtures / "webhooks/ping/payload.json").read_bytes()
    )
    folder = tmp_path / unique_action()
    folder.mkdir()
    (folder / "x.json").write_text('{"action": "opened"}')
    argv = [str(tmp_path), "--url", gateway.url, "--secret", WEBHOOK_SECRET]
    assert await asyncio.to_thread(main, argv) == 0
    assert await asyncio.to_thread(main, [*argv[:-1], "wrong-secret"]) == 1
