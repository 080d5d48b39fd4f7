"""The FastAPI application: routes under /api/v1, probes and metrics at the root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from .errors import install_error_handlers
from .middleware import RequestContextMiddleware
from .routes import (
    auth,
    health,
    organizations,
    repositories,
    repository_sync,
    stream,
    users,
    webhooks,
)
from .routes._common import API_PREFIX
from .settings import DEV_SESSION_SECRET, DEV_WEBHOOK_SECRET, GatewaySettings
from .state import Gateway

log = structlog.get_logger(__name__)


def _warn_about_defaults(settings: GatewaySettings) -> None:
    if settings.session_secret.get_secret_value() == DEV_SESSION_SECRET:
        log.warning("POLAR_SESSION_SECRET is the development default: set a real secret")
    if settings.github_webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
        log.warning("POLAR_GITHUB_WEBHOOK_SECRET is the development default: set the App's")


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warn_about_defaults(settings)
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
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    # Routes are matched in order: the busiest (webhook ingress) first.
    for module in (webhooks, auth, users, organizations, repositories, repository_sync, stream):
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


def asgi(app: FastAPI) -> ASGIApp:
    """What the server runs: the app behind the request-id/metrics middleware and the
    webhook fast path. Both sit outside FastAPI's own middleware stack, so every answer
    (errors included) gets a request id and is counted, and a webhook delivery costs none of
    the framework's machinery."""
    return RequestContextMiddleware(webhooks.WebhookIngress(app, gateway_app=app))
