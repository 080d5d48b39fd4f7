"""Configuration shared by every service, read from `POLAR_*` environment variables."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Services subclass this and add their own fields (port, secrets...)."""

    model_config = SettingsConfigDict(env_prefix="POLAR_", extra="ignore")

    dev_mode: bool = Field(
        False,
        description=(
            "Local development mode: allows the repository's public development secrets. "
            "`make dev` and the tests turn it on; never set it in a deployment."
        ),
    )

    internal_secret: SecretStr = Field(
        SecretStr(""),
        description=(
            "Signs and verifies the credentials of calls between Polar's processes (every "
            "service needs it; see SECURITY.md). Empty: the public development value, which "
            "only POLAR_DEV_MODE accepts."
        ),
    )
    internal_caller_key: SecretStr = Field(
        SecretStr(""),
        description=(
            "A caller's own signing key instead of the internal secret, for a process that "
            "only calls (the gateway): `python -m polar_kit.grpc.auth key gateway`."
        ),
    )
    grpc_reflection: bool = Field(
        False,
        description="Serve gRPC server reflection (grpcurl list/describe); `make dev` turns it on.",
    )

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/polar",
        description="PostgreSQL URL (postgresql://, postgres:// or postgresql+asyncpg://).",
    )
    database_role: str | None = Field(
        None,
        description=(
            "PostgreSQL role the service acts as on every connection (it may use only the "
            "service's own schema; decision 0021). Unset: `polar_<service>`; empty: the login "
            "user's own (when it is that role already)."
        ),
    )
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL(s), comma-separated for a cluster.",
    )
    nats_prefix: str = Field(
        "",
        description=(
            "Prepended to every NATS subject and (upper-cased) stream name, so several "
            "deployments or test runs can share one NATS server, e.g. `t3f9a.`."
        ),
    )
    nats_replicas: int = Field(
        1, ge=1, le=5, description="JetStream replicas for the streams (3 on a NATS cluster)."
    )
    nats_duplicate_window_seconds: float = Field(
        3600,
        gt=0,
        description=(
            "JetStream duplicate window: a message re-published with the same Nats-Msg-Id "
            "within it is dropped (outbox relay restarts, gateway retries)."
        ),
    )
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    log_json: bool | None = Field(
        None,
        description=(
            "JSON log lines (true) or human-readable ones (false); unset: JSON unless stdout "
            "is a terminal."
        ),
    )
    trace_dir: str = Field(
        "",
        description=(
            "Also write this process's spans to <dir>/<service>.<pid>.jsonl, one JSON object "
            "a line (`make dev` sets .dev/traces; `make trace ID=...` reads them). Tracing is "
            "otherwise set by the standard OTEL_* variables (README)."
        ),
    )
    github_api_url: str = Field(
        "https://api.github.com", description="Base URL of the GitHub REST API."
    )
    shutdown_grace_seconds: float = Field(
        10, ge=0, description="On SIGTERM, how long in-flight RPCs get to finish."
    )
    grpc_host: str = Field(
        "[::]",
        description="Address the gRPC server binds (all interfaces; `make dev`: 127.0.0.1).",
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Address the Prometheus /metrics endpoint binds."
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0 = off."
    )
    metrics_sample_seconds: float = Field(
        15.0,
        gt=0,
        description=(
            "How often the gauges read from NATS and PostgreSQL (consumer pending, outbox "
            "backlog, parked stream) are refreshed, while /metrics is on."
        ),
    )
    consumer_max_attempts: int = Field(
        5,
        ge=1,
        description=(
            "Failed attempts of a message before a consumer parks it. Outages (database or "
            "NATS unavailable) and waits for a parent (consumer_wait_max_seconds) do not count."
        ),
    )
    consumer_ack_wait_seconds: float = Field(
        5,
        gt=0,
        description=(
            "JetStream redelivers a message not acked within this time (a consumer that died); "
            "a consumer still working on it says so every third of it."
        ),
    )
    consumer_retry_base_seconds: float = Field(
        1, gt=0, description="First retry delay of a failed message; doubles per attempt."
    )
    consumer_retry_max_seconds: float = Field(
        60, gt=0, description="Upper bound of the retry delay of a failed message."
    )
    consumer_wait_max_seconds: float = Field(
        86400,
        gt=0,
        description=(
            "How long after it was accepted a message waiting for its parent (an event about "
            "an organization or repository not known yet) is retried before it is parked."
        ),
    )
    outage_retry_max_seconds: float = Field(
        5,
        gt=0,
        description=(
            "Upper bound of the delay between attempts while the database or NATS is "
            "unavailable (retried for as long as the outage lasts)."
        ),
    )
    retention_seconds: float = Field(
        31 * 24 * 3600,
        gt=0,
        description=(
            "Published outbox rows and processed-message marks older than this are deleted. "
            "Keep it above the longest stream retention (30 days) plus the duplicate window."
        ),
    )
    retention_interval_seconds: float = Field(
        600, gt=0, description="How often a replica prunes (one replica at a time)."
    )
    retention_batch_size: int = Field(
        1000, ge=1, description="Rows deleted per transaction when pruning."
    )
    outbox_poll_seconds: float = Field(
        1,
        gt=0,
        description="The outbox relay polls this often when no LISTEN/NOTIFY wake-up arrives.",
    )
    outbox_batch_size: int = Field(
        100, ge=1, description="Outbox rows the relay claims and publishes per transaction."
    )


class UpstreamSettings(ServiceSettings):
    """Settings of a process that calls other services: it mixes in one `<Service>Upstream`
    per service it calls, whose `<service>_grpc_target` then holds where to reach it."""

    grpc_deadline_seconds: float = Field(
        5, gt=0, description="Deadline of every call to another service (retries included)."
    )

    @model_validator(mode="after")
    def _upstream_targets(self) -> Self:
        # An empty target: 127.0.0.1 on the service's port (the dev cluster runner gives
        # every process every service's port variable, so it finds them wherever they are).
        for name in type(self).model_fields:
            if name.endswith("_grpc_target") and not getattr(self, name):
                port = getattr(self, name.removesuffix("_target") + "_port")
                setattr(self, name, f"127.0.0.1:{port}")
        return self


def _target(service: str) -> Any:
    return Field(
        "",
        description=(
            f"gRPC target (host:port) of the {service} service; "
            f"empty: 127.0.0.1 on POLAR_{service.upper()}_GRPC_PORT."
        ),
    )


def _port(service: str, default: int) -> Any:
    return Field(default, description=f"See {service}_grpc_target.")


class OrganizationUpstream(UpstreamSettings):
    organization_grpc_target: str = _target("organization")
    organization_grpc_port: int = _port("organization", 50051)


class RepositoryUpstream(UpstreamSettings):
    repository_grpc_target: str = _target("repository")
    repository_grpc_port: int = _port("repository", 50052)


class RewardUpstream(UpstreamSettings):
    reward_grpc_target: str = _target("reward")
    reward_grpc_port: int = _port("reward", 50053)
