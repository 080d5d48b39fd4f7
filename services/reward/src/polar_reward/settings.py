from __future__ import annotations

from polar_kit.settings import OrganizationUpstream, RepositoryUpstream
from pydantic import Field


# The services a reward is checked against (issue, organization, backer): by RPC, never by
# reading their tables (decision 0027).
class RewardSettings(RepositoryUpstream, OrganizationUpstream):
    reward_grpc_port: int = Field(50053, description="Port of the reward service's gRPC server.")
