"""Gateway configuration: `POLAR_*` environment variables on top of the shared ServiceSettings."""

from __future__ import annotations

from typing import Literal

from polar_kit.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator

# Defaults that make `make dev` work out of the box. A deployment sets real secrets; the
# gateway logs a warning at start-up while one of these is still in use.
DEV_SESSION_SECRET = "dev-only-insecure-session-secret-change-me"
DEV_WEBHOOK_SECRET = "dev-only-webhook-secret"


class GatewaySettings(ServiceSettings):
    gateway_http_host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    gateway_http_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP API.")

    organization_grpc_target: str = Field(
        "",
        description=(
            "gRPC target (host:port) of the organization service; "
            "empty: 127.0.0.1 on POLAR_ORGANIZATION_GRPC_PORT."
        ),
    )
    repository_grpc_target: str = Field(
        "",
        description=(
            "gRPC target (host:port) of the repository service; "
            "empty: 127.0.0.1 on POLAR_REPOSITORY_GRPC_PORT."
        ),
    )
    # The dev cluster runner gives every service the others' port variables: with only
    # these set, the gateway still finds the services wherever they listen.
    organization_grpc_port: int = Field(50051, description="See organization_grpc_target.")
    repository_grpc_port: int = Field(50052, description="See repository_grpc_target.")
    grpc_deadline_seconds: float = Field(
        5, gt=0, description="Deadline of every call to a service (retries included)."
    )
    grpc_max_attempts: int = Field(
        4, ge=1, le=5, description="Attempts of a call answered UNAVAILABLE (with backoff)."
    )

    github_webhook_secret: SecretStr = Field(
        SecretStr(DEV_WEBHOOK_SECRET),
        description="Secret of the GitHub App's webhook (verifies X-Hub-Signature-256).",
    )
    webhook_max_body_bytes: int = Field(
        25 * 1024 * 1024,
        gt=0,
        description=(
            "Larger webhook deliveries are refused (413); capped by the NATS server's "
            "max_payload, read at connect."
        ),
    )
    webhook_publish_timeout_seconds: float = Field(
        5, gt=0, description="How long a webhook waits for JetStream's ack before 503."
    )

    github_client_id: str = Field("", description="OAuth client id of the GitHub App.")
    github_client_secret: SecretStr = Field(
        SecretStr(""), description="OAuth client secret of the GitHub App."
    )
    github_authorize_url: str = Field(
        "https://github.com/login/oauth/authorize",
        description="Where the browser is sent to sign in with GitHub.",
    )
    github_token_url: str = Field(
        "https://github.com/login/oauth/access_token",
        description="Where the OAuth code is exchanged for a user token.",
    )
    github_oauth_scope: str = Field("user:email", description="OAuth scopes asked for.")
    github_http_timeout_seconds: float = Field(
        10, gt=0, description="Timeout of the gateway's own calls to GitHub (sign-in)."
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="The gateway's public base URL (builds the OAuth redirect_uri).",
    )
    frontend_url: str = Field(
        "",
        description=(
            "Base URL the browser returns to after sign-in (prefixed to `return_to`); "
            "empty: the gateway's own origin."
        ),
    )

    session_secret: SecretStr = Field(
        SecretStr(DEV_SESSION_SECRET),
        description="Signs session tokens and the OAuth state cookie (HS256); 32+ characters.",
    )
    session_ttl_seconds: int = Field(
        31 * 24 * 3600, gt=0, description="Lifetime of a session token."
    )
    session_cookie_name: str = Field("polar_session", description="Name of the session cookie.")
    cookie_domain: str = Field("", description="Domain of the cookies; empty: host-only.")
    cookie_secure: bool = Field(
        False, description="Send cookies over HTTPS only (true in any real deployment)."
    )
    cookie_samesite: Literal["lax", "strict", "none"] = Field(
        "lax", description="SameSite of the session cookie: lax, strict or none."
    )

    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS (JSON list), e.g. ["http://127.0.0.1:3000"].',
    )
    membership_cache_seconds: float = Field(
        5, ge=0, description="How long a membership answer is reused; 0 disables the cache."
    )
    membership_cache_size: int = Field(
        10_000, ge=1, description="Membership answers kept at most (oldest evicted)."
    )

    stream_ping_seconds: float = Field(
        15, gt=0, description="Heartbeat interval of the live stream (SSE comment lines)."
    )
    stream_send_timeout_seconds: float = Field(
        30, gt=0, description="A stream client that does not read for this long is dropped."
    )

    @model_validator(mode="after")
    def _default_targets(self) -> GatewaySettings:
        if not self.organization_grpc_target:
            self.organization_grpc_target = f"127.0.0.1:{self.organization_grpc_port}"
        if not self.repository_grpc_target:
            self.repository_grpc_target = f"127.0.0.1:{self.repository_grpc_port}"
        if len(self.session_secret.get_secret_value()) < 32:
            raise ValueError("session_secret must be at least 32 characters")
        return self
