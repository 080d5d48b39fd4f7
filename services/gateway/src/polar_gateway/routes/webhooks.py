"""POST /api/v2/integrations/github/webhook (and /api/v1/...): GitHub deliveries into JetStream.

Checks, each answered with a 4xx and nothing published: body over the limit (413, read in
chunks and abandoned at the limit; the limit is POLAR_WEBHOOK_MAX_BODY_BYTES, but never more
than the NATS server's max_payload: a delivery it cannot store is no "try again later"), a
content type other than JSON (415; configure the GitHub App to send application/json), a
missing or wrong X-Hub-Signature-256 (401; HMAC-SHA256 of the raw body with the webhook
secret, compared in constant time), missing or odd X-GitHub-Event / X-GitHub-Delivery
headers (400), a body that is not a JSON object or an `action` that is not a word (400).

Then the raw body is published to `github.webhook.<event>.<action>` (`github.webhook.<event>`
for events without an action) with Nats-Msg-Id = X-GitHub-Delivery (headers: X-GitHub-Event,
X-GitHub-Delivery, X-Request-ID, the W3C traceparent: polar_kit.tracing), and answered 202
only after JetStream's PubAck: an accepted delivery is stored. A redelivery within the duplicate
window is acknowledged as a duplicate and stored once. NATS down or no ack in time: 503, so
GitHub redelivers. `ping` is answered 200 and not published.

/api/v1's path does the same with the monolith's answers: 200 with WebhookResponse
`{"success": true, "message", "task_id"}` (task_id = the delivery id; message "duplicate"
or "pong"), errors as `{"detail": "..."}` with the same statuses.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import nats.errors
import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from polar_kit import tracing
from polar_kit.nats import publish, subject_for
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import mappers_v1
from ..bus import NatsUnavailable
from ..context import current_request_id
from ..errors import ApiError, error_body, v1_error_body
from ..metrics import WEBHOOKS
from ..schemas import WebhookAccepted
from ..schemas_v1 import WebhookResponse
from ..state import Gateway
from ._common import V1, V2, errors, json_response, v1_errors

log = structlog.get_logger(__name__)

router = APIRouter(prefix=V2, tags=["webhooks"])
router_v1 = APIRouter(prefix=V1, tags=["webhooks"])
PATH = V2 + "/integrations/github/webhook"
PATH_V1 = V1 + "/integrations/github/webhook"
ROUTE = "/integrations/github/webhook"  # the span's name, either version

_WORD = re.compile(r"^[a-z0-9_]{1,64}$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_JSON_TYPES = ("application/json",)


# Counter children looked up once: labels() costs a lock and a dict per call.
ACCEPTED, DUPLICATE, PING, REJECTED, UNAVAILABLE = (
    WEBHOOKS.labels(outcome)
    for outcome in ("accepted", "duplicate", "ping", "rejected", "unavailable")
)


class Rejected(ApiError):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(status, message, code=code)
        REJECTED.inc()


async def _read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Rejected(413, f"the delivery is larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"the delivery is larger than {limit} bytes")
    return parts[0] if len(parts) == 1 else b"".join(parts)


# Room for the subject and headers, which count against max_payload with the body.
_HEADER_ROOM = 1024


def _body_limit(gateway: Gateway) -> int:
    limit = gateway.settings.webhook_max_body_bytes
    nc = gateway.bus.nc
    if nc is not None and nc.is_connected:  # max_payload: the server's, read at connect
        limit = min(limit, nc.max_payload - _HEADER_ROOM)
    return limit


def _verify(gateway: Gateway, body: bytes, signature: str | None) -> None:
    if not signature:
        raise Rejected(401, "X-Hub-Signature-256 is missing", code="invalid_signature")
    secret = gateway.settings.github_webhook_secret.get_secret_value().encode()
    if not secret:  # an HMAC with an empty key is no proof at all (dev mode only gets here)
        raise Rejected(401, "webhooks are not configured", code="invalid_signature")
    # hmac.digest: OpenSSL's one-shot HMAC, without the Python-level HMAC object.
    expected = "sha256=" + hmac.digest(secret, body, "sha256").hex()
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise Rejected(401, "X-Hub-Signature-256 does not match the body", code="invalid_signature")


async def ingest(
    gateway: Gateway, headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> tuple[int, WebhookAccepted]:
    """One delivery, whatever serves HTTP: (status, answer), or an ApiError. `headers` has
    lower-case names. Its trace starts here (app.asgi leaves this route untraced)."""
    with tracing.serving("POST", ROUTE, headers, request_id=current_request_id()) as span:
        status, answer = await _ingest(gateway, headers, chunks)
        tracing.annotate(span, **{"http.response.status_code": status})
        return status, answer


async def _ingest(
    gateway: Gateway, headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> tuple[int, WebhookAccepted]:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise Rejected(415, "deliveries must be application/json")
    async with gateway.webhook_bodies.hold():  # bounded: unverified bodies in memory
        body = await _read_body(headers, chunks, _body_limit(gateway))
        _verify(gateway, body, headers.get("x-hub-signature-256"))

    event = headers.get("x-github-event", "")
    delivery = headers.get("x-github-delivery", "")
    if not _WORD.match(event):
        raise Rejected(400, "X-GitHub-Event is missing or not an event name")
    if not _DELIVERY.match(delivery):
        raise Rejected(400, "X-GitHub-Delivery is missing or not a delivery id")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(400, "the body is not valid JSON", code="malformed_json") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "the body must be a JSON object", code="malformed_json")
    if event == "ping":
        PING.inc()
        return 200, WebhookAccepted(status="pong", delivery=delivery)
    action = payload.get("action")
    if action is not None and not (isinstance(action, str) and _WORD.match(action)):
        raise Rejected(400, "`action` must be a lower-case word")

    subject = f"github.webhook.{event}" + (f".{action}" if action else "")
    message_headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if request_id := current_request_id():
        message_headers["X-Request-ID"] = request_id
    try:
        js = gateway.bus.jetstream()
        # The request's span is the message's producer: its consumers are its children.
        span = tracing.producing(subject, message_headers, delivery=delivery)
        ack = await publish(
            js,
            subject_for(gateway.settings, subject),
            body,
            msg_id=delivery,
            headers=message_headers,
            timeout=gateway.settings.webhook_publish_timeout_seconds,
        )
        tracing.annotate(span, stream_sequence=ack.seq)
    except NatsUnavailable:
        UNAVAILABLE.inc()
        raise
    except nats.errors.MaxPayloadError:  # the server's limit changed since we read it
        raise Rejected(413, "the delivery is larger than the message bus accepts") from None
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        UNAVAILABLE.inc()
        log.warning("webhook not stored", delivery=delivery, subject=subject, error=repr(exc))
        raise NatsUnavailable("the delivery could not be stored, redeliver it later") from exc
    (DUPLICATE if ack.duplicate else ACCEPTED).inc()
    # Every message this delivery causes carries its id: each consumer logs it (`delivery`).
    log.info(
        "webhook accepted",
        delivery=delivery,
        github_event=event,
        subject=subject,
        stream_sequence=ack.seq,
        duplicate=ack.duplicate,
    )  # with request_id (bound) and trace_id (polar_kit.tracing.add_trace_ids)
    return 202, WebhookAccepted(status="accepted", delivery=delivery, duplicate=bool(ack.duplicate))


@router.post(
    "/integrations/github/webhook",
    status_code=202,
    response_model=WebhookAccepted,
    responses={
        200: {"model": WebhookAccepted, "description": "ping"},
        **errors(400, 401, 413, 415, 503),
    },
)
async def github_webhook(request: Request) -> Response:
    """GitHub App webhook deliveries (see the module's docstring). Served by
    `WebhookIngress` ahead of the framework; this route documents it (and serves it when the
    fast path is not installed)."""
    gateway: Gateway = request.app.state.gateway
    status, answer = await ingest(gateway, request.headers, request.stream())
    return json_response(answer, status)


def _v1_answer(answer: WebhookAccepted) -> dict[str, Any]:
    return mappers_v1.webhook(answer.status, answer.delivery, answer.duplicate)


@router_v1.post(
    "/integrations/github/webhook",
    response_model=WebhookResponse,
    responses=v1_errors(400, 401, 413, 415, 503),
)
async def github_webhook_v1(request: Request) -> Response:
    """The same ingress, answered the monolith's way (served by `WebhookIngress` too)."""
    gateway: Gateway = request.app.state.gateway
    _, answer = await ingest(gateway, request.headers, request.stream())
    return json_response(_v1_answer(answer))


class WebhookIngress:
    """ASGI middleware answering POST {PATH} itself, without FastAPI's routing, dependency
    and validation machinery: the ingress is the gateway's busiest, most latency-sensitive
    route, and it needs none of it."""

    def __init__(self, app: ASGIApp, *, gateway_app: Any) -> None:
        self.app = app
        self.gateway_app = gateway_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path not in (PATH, PATH_V1) or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["polar.route"] = path
        v1 = path == PATH_V1
        gateway: Gateway = self.gateway_app.state.gateway
        extra: dict[str, str] = {}
        content: Any
        try:
            # ASGI header names are lower-case already; one dict instead of a scan per lookup.
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            status, answer = await ingest(gateway, headers, _chunks(receive))
            content = _v1_answer(answer) if v1 else answer.model_dump(mode="json")
            status = 200 if v1 else status
        except ApiError as exc:
            status, extra = exc.status, exc.headers
            content = v1_error_body(exc.message) if v1 else error_body(exc.code, exc.message)
        except Exception:  # outside FastAPI's error middleware: answer like it would
            log.exception("unhandled error in webhook ingress")
            status, message = 500, "internal error"
            content = v1_error_body(message) if v1 else error_body("internal", message)
        raw = [(b"content-type", b"application/json")]
        raw += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": orjson.dumps(content)})


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejected(400, "the client went away before the end of the delivery")
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
