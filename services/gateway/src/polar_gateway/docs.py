"""The API documents and their UI, served by the gateway itself.

- `/api/v2/openapi.json` and `/api/v1/openapi.json`: each version's own document; `/api/vN/docs`:
  Swagger UI for it; `/docs` leads to the recommended version's.
- Swagger UI's script and style come from this process (the `fastapi-offline` package's copy),
  not from a CDN: the docs work on a laptop without network and leak nothing to third parties.
- The documents declare how to authenticate (a bearer token, or the session cookie a sign-in
  sets), so the UI's Authorize button works, and v2's validation errors are documented in
  v2's own error shape (v1 keeps the monolith's `{"detail": [...]}`).

Served only when the docs are on (`POLAR_API_DOCS`; on in dev mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import BaseRoute

from .routes._common import V1, V2
from .settings import GatewaySettings

STATIC = "/docs/static"
ASSETS = Path(fastapi_offline.__file__).parent / "static"

API_VERSIONS = {
    V2: (
        "2.0.0",
        "Polar's HTTP/JSON API, the recommended version: cursor pages, money with a "
        "currency, one error object.\n\nTo try the routes here: sign in with GitHub at "
        f"`{V2}/integrations/github/authorize?return_to=/docs` (the session cookie then goes "
        "with every call), or paste a token into Authorize (`python -m polar_gateway.token "
        "USER_ID` mints one locally).",
    ),
    V1: ("1.0.0", "The monolith's contract, kept for its clients: use /api/v2 for new work."),
}
# Routes that take no session: GitHub's deliveries are signed, sign-in starts without one.
UNAUTHENTICATED = (
    "/integrations/github/webhook",
    "/integrations/github/authorize",
    "/integrations/github/callback",
    "/users/login",
)


def _security(document: dict[str, Any], settings: GatewaySettings) -> None:
    """Declare the bearer token and the session cookie; require one where a route answers 401."""
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A session token: what sign-in sets as the cookie, or "
            "`python -m polar_gateway.token USER_ID`.",
        },
        "session": {"type": "apiKey", "in": "cookie", "name": settings.session_cookie_name},
    }
    for path, operations in document.get("paths", {}).items():
        if path.endswith(UNAUTHENTICATED):
            continue
        for operation in operations.values():
            if "401" in operation.get("responses", {}):
                operation["security"] = [{"bearer": []}, {"session": []}]


def _v2_validation_errors(document: dict[str, Any]) -> None:
    """v2 answers a malformed request with its own error object, not FastAPI's default."""
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            invalid = operation.get("responses", {}).get("422")
            if invalid is not None:
                invalid["description"] = "The request is not valid (the fields at fault)"
                invalid["content"] = {"application/json": {"schema": error}}
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def openapi_document(app: FastAPI, prefix: str, settings: GatewaySettings) -> dict[str, Any]:
    """The OpenAPI document of one version: its routes only."""
    version, description = API_VERSIONS[prefix]
    routes: list[BaseRoute] = app.state.api_routes[prefix]
    document = get_openapi(
        title="Polar API", version=version, description=description, routes=routes
    )
    _security(document, settings)
    if prefix == V2:
        _v2_validation_errors(document)
    return document


def install_docs(app: FastAPI, settings: GatewaySettings) -> None:
    app.mount(STATIC, StaticFiles(directory=ASSETS), name="docs-static")

    async def to_recommended(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{V2}/docs", status_code=307)

    app.add_route("/docs", to_recommended, include_in_schema=False)
    for prefix in API_VERSIONS:
        cache: dict[str, Any] = {}

        async def document(
            request: Request, prefix: str = prefix, cache: dict[str, Any] = cache
        ) -> JSONResponse:
            if not cache:
                cache.update(openapi_document(app, prefix, settings))
            return JSONResponse(cache)

        async def docs(request: Request, prefix: str = prefix) -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=f"{prefix}/openapi.json",
                title=f"Polar API {prefix.rsplit('/', 1)[-1]}",
                swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                swagger_css_url=f"{STATIC}/swagger-ui.css",
                swagger_favicon_url=f"{STATIC}/favicon.png",
                # Calls from the UI carry the session cookie of a browser that signed in.
                swagger_ui_parameters={"withCredentials": True, "persistAuthorization": True},
            )

        app.add_route(f"{prefix}/openapi.json", document, include_in_schema=False)
        app.add_route(f"{prefix}/docs", docs, include_in_schema=False)
