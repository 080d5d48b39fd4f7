"""The FastAPI application: /api/v2 (recommended) and /api/v1 (the monolith's contract),
each with its own OpenAPI document; probes at the root, metrics on their own port
(POLAR_METRICS_PORT, never the public one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from polar_kit.metrics import start_metrics_server
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from .errors import install_error_handlers
from .middleware import RequestContextMiddleware, SecurityHeadersMiddleware
from .ratelimit import RateLimitMiddleware
from .routes import auth, health, organizations, repositories, sessions, stream, users, webhooks
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

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    # Routes are matched in order: the busiest (webhook ingress) first.
    modules = (webhooks, auth, users, organizations, repositories, stream)
    for module in modules:
        # The routers carry their /api/vN prefix themselves, so a matched route's `path` is
        # the full template (the metrics label).
        app.include_router(module.router)
    app.include_router(sessions.router)  # v2 only: v1 has no session management
    for module in modules:
        app.include_router(module.router_v1)
    app.include_router(health.router)
    app.state.api_routes = {
        V2: [r for m in (*modules, sessions) for r in m.router.routes],
        V1: [r for m in modules for r in m.router_v1.routes],
    }
    if settings.docs_enabled:  # on in dev mode, off in a deployment unless POLAR_API_DOCS
        _documents(app)
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


API_VERSIONS = {
    V2: (
        "2.0.0",
        "Polar's HTTP/JSON API, the recommended version: cursor pages, money with a "
        "currency, one error object.",
    ),
    V1: ("1.0.0", "The monolith's contract, kept for its clients: use /api/v2 for new work."),
}


def openapi_document(app: FastAPI, prefix: str) -> dict[str, Any]:
    """The OpenAPI document of one version: its routes only."""
    version, description = API_VERSIONS[prefix]
    routes: list[BaseRoute] = app.state.api_routes[prefix]
    return get_openapi(title="Polar API", version=version, description=description, routes=routes)


def _documents(app: FastAPI) -> None:
    for prefix in API_VERSIONS:
        cache: dict[str, Any] = {}

        async def document(
            request: Request, prefix: str = prefix, cache: dict[str, Any] = cache
        ) -> JSONResponse:
            if not cache:
                cache.update(openapi_document(app, prefix))
            return JSONResponse(cache)

        async def docs(request: Request, prefix: str = prefix) -> HTMLResponse:
            return get_swagger_ui_html(openapi_url=f"{prefix}/openapi.json", title="Polar API")

        app.add_route(f"{prefix}/openapi.json", document, include_in_schema=False)
        app.add_route(f"{prefix}/docs", docs, include_in_schema=False)


def asgi(app: FastAPI, settings: GatewaySettings) -> ASGIApp:
    """What the server runs: the app behind the request-id/metrics middleware, the security
    headers, the rate limits and the webhook fast path. All sit outside FastAPI's own
    middleware stack, so every answer (errors and 429s included) gets a request id and its
    headers and is counted, and a webhook delivery costs none of the framework's machinery."""
    ingress = webhooks.WebhookIngress(app, gateway_app=app)
    limited = RateLimitMiddleware(ingress, settings)
    return RequestContextMiddleware(SecurityHeadersMiddleware(limited, gateway_app=app))
