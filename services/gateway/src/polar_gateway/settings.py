"""Gateway configuration: `POLAR_*` environment variables on top of the shared ServiceSettings."""

from __future__ import annotations

from typing import Literal

from polar_kit.secrets import MIN_SECRET_BYTES, InsecureSecretError, check_secret
from polar_kit.settings import OrganizationUpstream, RepositoryUpstream, RewardUpstream
from pydantic import Field, SecretStr, model_validator

# Defaults that make `make dev` work out of the box. They are public (polar_kit.secrets
# PUBLISHED_SECRETS): outside POLAR_DEV_MODE the gateway refuses to start with them.
DEV_SESSION_SECRET = "dev-only-insecure-session-secret-change-me"
DEV_WEBHOOK_SECRET = "dev-only-webhook-secret"
SESSION_COOKIE = "polar"  # the v1 contract's name; `__Host-polar` when Secure


class GatewaySettings(OrganizationUpstream, RepositoryUpstream, RewardUpstream):
    # The services it calls: their targets, ports and grpc_deadline_seconds (polar_kit).
    gateway_http_host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    gateway_http_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP API.")

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
    webhook_max_concurrent_bodies: int = Field(
        2,
        ge=1,
        description=(
            "Webhook bodies read and verified at once (their memory: about this times "
            "webhook_max_body_bytes); a delivery waits up to "
            "webhook_publish_timeout_seconds for a slot, then gets 503."
        ),
    )

    http_header_timeout_seconds: float = Field(
        10,
        gt=0,
        description=(
            "A connection must send a complete request head within this time (after "
            "connecting or after its previous answer), else it is closed."
        ),
    )
    http_body_timeout_seconds: float = Field(
        30, gt=0, description="A request body must arrive whole within this time (else 408)."
    )
    http_max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Larger request heads (line + headers) get 431."
    )
    http_keep_alive_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this time."
    )
    forwarded_allow_ips: str = Field(
        "",
        description=(
            "Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For/-Proto are trusted: "
            "the client address used by the rate limits. Empty: none (clients connect "
            "directly). Only your ingress, never `*`: a client could choose its address."
        ),
    )
    rate_limit_sign_in_per_minute: int = Field(
        20, ge=0, description="Sign-in requests (authorize, callback) per client IP; 0 = off."
    )
    rate_limit_write_per_minute: int = Field(
        120, ge=0, description="Write requests (POST, PATCH, PUT, DELETE) per client IP; 0 = off."
    )
    rate_limit_webhook_failures_per_minute: int = Field(
        30,
        ge=0,
        description=(
            "Rejected webhook deliveries (bad signature, too large, malformed) per client IP "
            "before its deliveries get 429; accepted ones never count; 0 = off."
        ),
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
        12 * 3600,
        gt=0,
        description="Absolute lifetime of a session: sign in again after it, active or not.",
    )
    session_idle_seconds: int = Field(
        30 * 60,
        gt=0,
        description=(
            "A session unused for this long ends; each use within it extends it (the cookie "
            "is re-issued), up to session_ttl_seconds."
        ),
    )
    cookie_domain: str = Field("", description="Domain of the cookies; empty: host-only.")
    cookie_secure: bool | None = Field(
        None,
        description=(
            "Send cookies over HTTPS only; empty: true unless POLAR_DEV_MODE. The session "
            "cookie is `__Host-polar` when secure, `polar` otherwise."
        ),
    )
    cookie_samesite: Literal["lax", "strict", "none"] = Field(
        "lax", description="SameSite of the session cookie: lax, strict or none."
    )

    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            'Origins allowed by CORS with credentials (JSON list), e.g. ["https://app.example"]; '
            '"*" is refused (it would let any site use the session cookie).'
        ),
    )
    api_docs: bool | None = Field(
        None,
        description="Serve the OpenAPI documents and UIs (/docs); empty: only in dev mode.",
    )
    membership_cache_seconds: float = Field(
        5, ge=0, description="How long a membership answer is reused; 0 disables the cache."
    )
    membership_cache_size: int = Field(
        10_000, ge=1, description="Membership answers kept at most (oldest evicted)."
    )

    read_model_users: int = Field(
        10_000,
        ge=1,
        description=(
            "Users whose GET /user/organizations answers the gateway keeps in memory (kept "
            "current from the domain events; emptied when full)."
        ),
    )

    stream_ping_seconds: float = Field(
        15, gt=0, description="Heartbeat interval of the live stream (SSE comment lines)."
    )
    stream_send_timeout_seconds: float = Field(
        30, gt=0, description="A stream client stuck in one write for this long is dropped."
    )
    stream_buffer_events: int = Field(
        256,
        ge=1,
        description=(
            "Events waiting for one stream client at most; a client that falls further "
            "behind is disconnected (it resumes with Last-Event-ID)."
        ),
    )
    stream_max_clients: int = Field(
        5000,
        ge=1,
        description="Open live streams per gateway process; more get 503 with Retry-After.",
    )
    stream_max_catchups: int = Field(
        100,
        ge=1,
        description=(
            "Streams resuming with Last-Event-ID at once per process (each has its own "
            "JetStream consumer while it catches up); more get 503 with Retry-After."
        ),
    )
    stream_recheck_seconds: float = Field(
        5,
        gt=0,
        description=(
            "An open stream sends nothing unless it checked within this time that its user "
            "still exists (one GetUser per user at most every half of this)."
        ),
    )
    stream_replay_seconds: int = Field(
        3600,
        ge=0,
        description=(
            "Last-Event-ID replays at most this far back (and never before the user joined "
            "the organization); 0: no replay, a reconnect starts at new events."
        ),
    )

    @model_validator(mode="after")
    def _checks(self) -> GatewaySettings:
        if "*" in self.cors_origins:
            # Starlette answers a credentialed request to "*" by echoing its Origin: any site
            # could then read the API with the visitor's session cookie.
            raise ValueError(
                'POLAR_CORS_ORIGINS must list the origins of the web app: "*" is refused, '
                "because CORS requests carry the session cookie"
            )
        if self.session_idle_seconds > self.session_ttl_seconds:
            self.session_idle_seconds = self.session_ttl_seconds
        return self

    @property
    def secure_cookies(self) -> bool:
        return (not self.dev_mode) if self.cookie_secure is None else self.cookie_secure

    @property
    def session_cookie_name(self) -> str:
        # __Host-: the browser accepts it only from HTTPS, with Path=/ and no Domain, so a
        # sibling subdomain cannot set or shadow it; __Secure- when a Domain is configured.
        if not self.secure_cookies:
            return SESSION_COOKIE
        return ("__Secure-" if self.cookie_domain else "__Host-") + SESSION_COOKIE

    @property
    def docs_enabled(self) -> bool:
        return self.dev_mode if self.api_docs is None else self.api_docs

    def check_secrets(self) -> None:
        """Raises polar_kit.secrets.InsecureSecretError (at start-up) for a missing, short or
        published secret, outside development mode."""
        for name, value, dev_default in (
            ("POLAR_SESSION_SECRET", self.session_secret, DEV_SESSION_SECRET),
            ("POLAR_GITHUB_WEBHOOK_SECRET", self.github_webhook_secret, DEV_WEBHOOK_SECRET),
        ):
            secret = value.get_secret_value()
            # The development default stands for "not set" (it is what an unset one reads as).
            check_secret(name, "" if secret == dev_default else secret, dev_mode=self.dev_mode)
        if len(self.session_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            # Even in development mode: HS256 with a short key is guessable offline.
            raise InsecureSecretError(
                f"POLAR_SESSION_SECRET is shorter than {MIN_SECRET_BYTES} bytes"
            )
