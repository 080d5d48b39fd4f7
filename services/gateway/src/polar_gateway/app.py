"""The FastAPI application: routes under /api/v1 (and /api/v2), probes at the root, metrics
on their own port (POLAR_METRICS_PORT, never the public one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from polar_kit.metrics import start_metrics_server
from starlette.types import ASGIApp

from .errors import install_error_handlers
from .middleware import RequestContextMiddleware, SecurityHeadersMiddleware
from .ratelimit import RateLimitMiddleware
from .routes import auth, health, organizations, repositories, sessions, stream, users, webhooks
from .routes._common import API_PREFIX
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
        start_metrics_server(settings.metrics_port)
        gateway = Gateway.create(settings)
        app.state.gateway = gateway
        gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(
        title="Polar API",
        version="1.0.0",
        description="Polar's public HTTP/JSON API (the gateway in front of the gRPC services).",
        # The document and its UI: on in dev mode, off in a deployment unless POLAR_API_DOCS.
        openapi_url=f"{API_PREFIX}/openapi.json" if settings.docs_enabled else None,
        docs_url=f"{API_PREFIX}/docs" if settings.docs_enabled else None,
        redoc_url=None,
        lifespan=lifespan,
    )
    # Routes are matched in order: the busiest (webhook ingress) first.
    for module in (webhooks, auth, sessions, users, organizations, repositories, stream):
        # The routers carry the /api/v1 prefix themselves, so a matched route's `path` is
        # the full template (the metrics label).
        app.include_router(module.router)
    app.include_router(health.router)
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
    headers, the rate limits and the webhook fast path. All sit outside FastAPI's own
    middleware stack, so every answer (errors and 429s included) gets a request id and its
    headers and is counted, and a webhook delivery costs none of the framework's machinery."""
    ingress = webhooks.WebhookIngress(app, gateway_app=app)
    limited = RateLimitMiddleware(ingress, settings)
    return RequestContextMiddleware(SecurityHeadersMiddleware(limited, gateway_app=app))
