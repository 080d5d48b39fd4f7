"""The FastAPI application: /api/v2 (recommended) and /api/v1 (the monolith's contract),
each with its own OpenAPI document; probes at the root, metrics on their own port
(POLAR_METRICS_PORT, never the public one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from polar_kit import tracing
from polar_kit.metrics import start_metrics_server
from starlette.types import ASGIApp, Receive, Scope, Send

from .docs import install_docs
from .errors import install_error_handlers
from .middleware import RequestContextMiddleware, SecurityHeadersMiddleware
from .ratelimit import RateLimitMiddleware
from .routes import (
    auth,
    health,
    organizations,
    repositories,
    repository_sync,
    sessions,
    stream,
    users,
    webhooks,
)
from .routes._common import V1, V2
from .settings import GatewaySettings
from .state import Gateway

log = structlog.get_logger(__name__)


def create_app(settings: GatewaySettings) -> FastAPI:
    """Raises polar_kit.secrets.InsecureSecretError for secrets a deployment must not use."""
    settings.check_secrets()
    if settings.dev_mode:
        log.warning("POLAR_DEV_MODE is on: development secrets allowed, insecure cookies")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start_metrics_server(settings.metrics_port, settings.metrics_host)
        gateway = Gateway.create(settings)
        app.state.gateway = gateway
        gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's own telemetry, on whenever a tracer provider is set, would trace each
        # request a second time (plus a span per dependency, endpoint and serialisation):
        # the request's one span is the ASGI instrumentation's, around every middleware
        # (asgi()); metrics are Prometheus', logs structlog's.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # Routes are matched in order: the busiest (webhook ingress) first.
    modules = (webhooks, auth, users, organizations, repositories, stream)
    for module in modules:
        # The routers carry their /api/vN prefix themselves, so a matched route's `path` is
        # the full template (the metrics label).
        app.include_router(module.router)
    # v2 only: v1 had no session management nor sync state.
    v2_only = (sessions, repository_sync)
    for module in v2_only:
        app.include_router(module.router)
    for module in modules:
        app.include_router(module.router_v1)
    app.include_router(health.router)
    app.state.api_routes = {
        V2: [r for m in (*modules, *v2_only) for r in m.router.routes],
        V1: [r for m in modules for r in m.router_v1.routes],
    }
    if settings.docs_enabled:  # on in dev mode, off in a deployment unless POLAR_API_DOCS
        install_docs(app, settings)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,  # the session cookie
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Last-Event-ID"],
            expose_headers=["X-Request-ID"],
        )
    return app


def asgi(app: FastAPI, settings: GatewaySettings) -> ASGIApp:
    """What the server runs: the app behind the request-id/metrics middleware, the security
    headers, the rate limits, the webhook fast path and the live streams' hand-off. All sit
    outside FastAPI's own middleware stack, so every answer (errors and 429s included) gets
    a request id and its headers and is counted, a webhook delivery costs none of the
    framework's machinery, and an open stream does not keep it alive."""
    ingress = webhooks.WebhookIngress(stream.LiveIngress(app), gateway_app=app)
    limited = RateLimitMiddleware(ingress, settings)
    served = RequestContextMiddleware(SecurityHeadersMiddleware(limited, gateway_app=app))
    if not tracing.enabled():
        return served
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware  # (only when on)

    # Outermost, so the request's log lines carry its trace id; one span per request (not
    # one per ASGI message: a live stream sends thousands), probes not traced. Not around
    # the webhook ingress, which starts a lighter span of its own (webhooks.ingest).
    traced = OpenTelemetryMiddleware(
        served, excluded_urls="/healthz,/readyz,/metrics", exclude_spans=["receive", "send"]
    )

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        untraced = scope.get("path") in (webhooks.PATH, webhooks.PATH_V1)
        await (served if untraced else traced)(scope, receive, send)

    return dispatch
