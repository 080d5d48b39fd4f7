from __future__ import annotations

from polar_kit.settings import ServiceSettings
from pydantic import Field


class RewardSettings(ServiceSettings):
    reward_grpc_port: int = Field(50053, description="Port of the reward service's gRPC server.")
    # The services a reward is checked against (issue, organization, backer): by RPC, never
    # by reading their tables (decision 0027).
    repository_grpc_target: str = Field(
        "",
        description=(
            "gRPC target (host:port) of the repository service; "
            "empty: 127.0.0.1 on POLAR_REPOSITORY_GRPC_PORT."
        ),
    )
    organization_grpc_target: str = Field(
        "",
        description=(
            "gRPC target (host:port) of the organization service; "
            "empty: 127.0.0.1 on POLAR_ORGANIZATION_GRPC_PORT."
        ),
    )
    repository_grpc_port: int = Field(50052, description="See repository_grpc_target.")
    organization_grpc_port: int = Field(50051, description="See organization_grpc_target.")
    grpc_deadline_seconds: float = Field(
        5, gt=0, description="Deadline of every call to a service (retries included)."
    )
