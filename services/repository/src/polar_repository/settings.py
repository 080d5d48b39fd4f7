from __future__ import annotations

from pathlib import Path

from polar_kit.settings import OrganizationUpstream
from pydantic import Field, SecretStr


# The organization service is asked to repair the read model of organizations (read_model.py).
class RepositorySettings(OrganizationUpstream):
    repository_grpc_port: int = Field(
        50052, description="Port of the repository service's gRPC server."
    )
    github_app_id: str = Field(
        "",
        description=(
            "GitHub App id (or client id): the issuer of the JWT the sync exchanges for an "
            "installation token. Empty disables the GitHub sync."
        ),
    )
    github_app_private_key: SecretStr = Field(
        SecretStr(""),
        description=(
            "The GitHub App's private key (PEM). Alternatively set "
            "`POLAR_GITHUB_APP_PRIVATE_KEY_FILE`."
        ),
    )
    github_app_private_key_file: Path | None = Field(
        None, description="Path of a PEM file with the GitHub App's private key."
    )
    # GitHub sync (sync.py, github.py)
    github_timeout_seconds: float = Field(
        30, gt=0, description="Timeout of one GitHub API request made by the sync."
    )
    github_rate_limit_max_wait_seconds: float = Field(
        900,
        ge=0,
        description=(
            "Longest the sync waits for GitHub's rate limit to reset before retrying the same "
            "page; a later reset reschedules the sync for the reset time."
        ),
    )
    github_rate_limit_low_remaining: int = Field(
        50,
        ge=0,
        description=(
            "When fewer GitHub requests than this are left, the sync spreads the rest evenly "
            "until the rate limit resets."
        ),
    )
    sync_max_concurrent: int = Field(
        4, ge=1, description="Syncs run at once per replica; more wait their turn."
    )
    sync_poll_seconds: float = Field(
        5,
        gt=0,
        description=(
            "How often a replica looks for due sync jobs (queued, interrupted, or retrying) "
            "when no LISTEN/NOTIFY wake-up arrives."
        ),
    )
    sync_retry_base_seconds: float = Field(
        30, gt=0, description="First retry delay of a failed sync; doubles per failed attempt."
    )
    sync_retry_max_seconds: float = Field(
        3600, gt=0, description="Upper bound of the retry delay of a failed sync."
    )
    sync_max_attempts: int = Field(
        12,
        ge=1,
        description=(
            "Failed attempts of a sync (GitHub unavailable, unexpected errors) before it is "
            "given up; with the defaults, retries go on for about six hours."
        ),
    )
    sync_pull_request_details: bool = Field(
        True,
        description=(
            "Fetch the full object of each new or changed pull request (one request each) "
            "for what the pulls listing lacks: commits, additions, deletions, changed files, "
            "comments, mergeability..."
        ),
    )
    sync_interval_seconds: int = Field(
        21600,
        ge=0,
        description=(
            "Periodic reconciliation: every repository is synced again (incrementally, "
            "since its last successful sync) once per this many seconds, at a slot of its "
            "own so the syncs spread over the interval; 0 turns it off."
        ),
    )

    def github_private_key(self) -> str:
        """The PEM text, from the value or else the file; empty when neither is set."""
        if key := self.github_app_private_key.get_secret_value():
            # Env files and Kubernetes secrets often carry the PEM with literal "\n".
            return key.replace("\\n", "\n")
        if self.github_app_private_key_file is not None:
            return self.github_app_private_key_file.read_text()
        return ""
