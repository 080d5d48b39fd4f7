"""Secrets fail closed: a process refuses to start on a missing, short or published secret.

Outside development mode (`POLAR_DEV_MODE=true`, set by `make dev` and the tests), every secret
must be set, at least 32 bytes long, and must not be one of the values committed in this
repository (development defaults, `.env.example`): those are public, so they protect nothing.
"""

from __future__ import annotations

MIN_SECRET_BYTES = 32

# Every secret value that appears in the repository. A deployment using one of them is as open
# as one without a secret; keep this list in step with .env.example and the dev defaults.
PUBLISHED_SECRETS: frozenset[str] = frozenset(
    {
        "dev-only-insecure-session-secret-change-me",
        "dev-only-webhook-secret",
        "dev-only-internal-secret",  # polar_kit.grpc.auth
        "ZGV2LW9ubHktdG9rZW4ta2V5LW5vdC1hLXNlY3JldCE=",  # polar_organization.tokens
        # .env.example before secrets moved to the user's .env (still in the history).
        "compose-local-webhook-secret",
        "compose-local-session-secret-not-for-production",
        # The tests', the benchmarks' and the deployment checker's.
        "test-webhook-secret",
        "bench-webhook-secret",
        "bench-session-secret-" + "x" * 32,
        "cluster-e2e-webhook-secret",
        "cluster-e2e-session-secret-" + "x" * 32,
        "placeholder-secret-value-of-sufficient-length-0123456789",
    }
)


class InsecureSecretError(RuntimeError):
    """Raised at start-up: the process must not serve with this secret."""


def check_secret(name: str, value: str, *, dev_mode: bool) -> None:
    """Raise InsecureSecretError unless `value` is a real secret (or development mode is on)."""
    if dev_mode:
        return
    if not value:
        problem = "is not set"
    elif value in PUBLISHED_SECRETS:
        problem = "is a value published in the Polar repository"
    elif len(value.encode()) < MIN_SECRET_BYTES:
        problem = f"is shorter than {MIN_SECRET_BYTES} bytes"
    else:
        return
    raise InsecureSecretError(
        f"{name} {problem}: set a random value (e.g. `openssl rand -hex 32`), "
        "or POLAR_DEV_MODE=true for local development only"
    )
