from __future__ import annotations

from polar_kit.settings import ServiceSettings
from pydantic import Field, SecretStr


class OrganizationSettings(ServiceSettings):
    organization_grpc_port: int = Field(
        50051, description="Port of the organization service's gRPC server."
    )
    token_encryption_keys: SecretStr = Field(
        SecretStr(""),
        description=(
            "Fernet keys encrypting the stored GitHub OAuth tokens, comma-separated, newest "
            "first: the first encrypts, all decrypt (rotation: polar_organization.tokens). "
            "Empty: the public development key, which only POLAR_DEV_MODE accepts."
        ),
    )
