from __future__ import annotations

from polar_kit.settings import ServiceSettings
from pydantic import Field


class OrganizationSettings(ServiceSettings):
    organization_grpc_port: int = Field(
        50051, description="Port of the organization service's gRPC server."
    )
