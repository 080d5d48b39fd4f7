from __future__ import annotations

from pathlib import Path

from polar_kit.settings import ServiceSettings
from pydantic import Field, SecretStr


class RepositorySettings(ServiceSettings):
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
            "page; a later reset makes the sync give up (start it again later)."
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

    def github_private_key(self) -> str:
        """The PEM text, from the value or else the file; empty when neither is set."""
        if key := self.github_app_private_key.get_secret_value():
            # Env files and Kubernetes secrets often carry the PEM with literal "\n".
            return key.replace("\\n", "\n")
        if self.github_app_private_key_file is not None:
            return self.github_app_private_key_file.read_text()
        return ""
