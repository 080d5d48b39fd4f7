"""Wiring shared by __main__ and the tests: the gRPC service and the consumers."""

from __future__ import annotations

from nats.js import JetStreamContext
from polar.organization.v1 import organization_service_pb2, organization_service_pb2_grpc
from polar_kit.consumer import Consumer
from polar_kit.grpc import ServiceSpec
from polar_kit.grpc.auth import ALL, GATEWAY, OPERATOR, REPOSITORY, REWARD, AllowList
from polar_kit.nats import WEBHOOKS
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .consumers import INSTALLATION_SUBJECTS, on_installation
from .github import GitHubClient
from .servicer import OrganizationServicer
from .settings import OrganizationSettings
from .tokens import TokenCipher

SERVICE_NAME = organization_service_pb2.DESCRIPTOR.services_by_name["OrganizationService"].full_name

# Who may call what (polar_kit.grpc.auth). The gateway reads, signs users in and lets them
# claim an installation; membership changes, suspension and deletion come from GitHub's
# webhooks, or from an operator.
CALLERS: AllowList = {
    GATEWAY: frozenset(
        {
            "GetOrganization",
            "LookupOrganization",
            "ListOrganizations",
            "InstallOrganization",
            "ListMembers",
            "CheckMembership",
            "UpsertUserFromGitHub",
            "GetUser",
            # v1's user admin (DELETE /users/{id}); the route checks the caller is a superuser.
            "DeleteUser",
        }
    ),
    # A reward is refused for a suspended organization and names an existing backer.
    REWARD: frozenset({"GetOrganization", "GetUser"}),
    # Repairs its read model of organizations (polar_repository.read_model).
    REPOSITORY: frozenset({"GetOrganization", "ListOrganizations"}),
    OPERATOR: ALL,
}


def service_spec(settings: OrganizationSettings) -> ServiceSpec:
    return ServiceSpec(
        name=SERVICE_NAME,
        add_to_server=organization_service_pb2_grpc.add_OrganizationServiceServicer_to_server,
        # Refuses to start without real encryption keys outside development mode.
        servicer=OrganizationServicer(
            GitHubClient(settings.github_api_url), TokenCipher.from_settings(settings)
        ),
        callers=CALLERS,
    )


def consumers(
    settings: OrganizationSettings,
    js: JetStreamContext,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[Consumer]:
    return [
        Consumer(
            "organization-installations",
            WEBHOOKS,
            INSTALLATION_SUBJECTS,
            on_installation,
            sessionmaker=sessionmaker,
            js=js,
            settings=settings,
        )
    ]
