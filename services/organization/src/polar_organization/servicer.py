"""gRPC transport: validate, map proto <-> domain, call the service. No SQL, no rules."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from google.protobuf.json_format import MessageToDict
from polar.organization.v1 import organization_service_pb2 as pb
from polar.organization.v1 import organization_service_pb2_grpc as pb_grpc
from polar_kit.errors import InvalidArgument
from polar_kit.grpc import current_session
from polar_kit.validation import (
    optional_uuid,
    page_size,
    parse_uuid,
    require_positive,
    require_text,
)

from . import mappers, service
from .github import GitHubClient
from .tokens import TokenCipher

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class OrganizationServicer(pb_grpc.OrganizationServiceServicer):
    def __init__(self, github: GitHubClient, cipher: TokenCipher) -> None:
        self.github = github
        self.cipher = cipher

    async def GetOrganization(
        self, request: pb.GetOrganizationRequest, context: Context
    ) -> pb.GetOrganizationResponse:
        org = await service.get_organization(current_session(), parse_uuid("id", request.id))
        return pb.GetOrganizationResponse(organization=mappers.organization(org))

    async def LookupOrganization(
        self, request: pb.LookupOrganizationRequest, context: Context
    ) -> pb.LookupOrganizationResponse:
        session = current_session()
        key = request.WhichOneof("key")
        if key == "name":
            platform = mappers.platform_from_proto(request.name.platform)
            name = require_text("name.name", request.name.name)
            org = await service.lookup_by_name(session, platform, name)
        elif key == "external_id":
            platform = mappers.platform_from_proto(request.external_id.platform)
            external_id = require_positive(
                "external_id.external_id", request.external_id.external_id
            )
            org = await service.lookup_by_external_id(session, platform, external_id)
        elif key == "installation_id":
            installation_id = require_positive("installation_id", request.installation_id)
            org = await service.lookup_by_installation_id(session, installation_id)
        else:
            raise InvalidArgument("set one of name, external_id or installation_id")
        return pb.LookupOrganizationResponse(organization=mappers.organization(org))

    async def ListOrganizations(
        self, request: pb.ListOrganizationsRequest, context: Context
    ) -> pb.ListOrganizationsResponse:
        page = await service.list_organizations(
            current_session(),
            member_user_id=optional_uuid("member_user_id", request.member_user_id),
            page_size=page_size(request.page_size),
            page_token=request.page_token,
        )
        return pb.ListOrganizationsResponse(
            organizations=[mappers.organization(o) for o in page.items],
            next_page_token=page.next_page_token,
        )

    async def InstallOrganization(
        self, request: pb.InstallOrganizationRequest, context: Context
    ) -> pb.InstallOrganizationResponse:
        user_id = parse_uuid("user_id", request.user_id)
        mappers.platform_from_proto(request.platform)
        installation_id = require_positive("installation_id", request.installation_id)
        org = await service.install(
            current_session(),
            self.github,
            self.cipher,
            user_id=user_id,
            installation_id=installation_id,
        )
        return pb.InstallOrganizationResponse(organization=mappers.organization(org))

    async def SuspendOrganization(
        self, request: pb.SuspendOrganizationRequest, context: Context
    ) -> pb.SuspendOrganizationResponse:
        session = current_session()
        org = await service.get_organization(session, parse_uuid("id", request.id))
        org = await service.suspend(session, org, by=request.suspended_by or None)
        return pb.SuspendOrganizationResponse(organization=mappers.organization(org))

    async def UnsuspendOrganization(
        self, request: pb.UnsuspendOrganizationRequest, context: Context
    ) -> pb.UnsuspendOrganizationResponse:
        session = current_session()
        org = await service.get_organization(session, parse_uuid("id", request.id))
        org = await service.unsuspend(session, org)
        return pb.UnsuspendOrganizationResponse(organization=mappers.organization(org))

    async def DeleteOrganization(
        self, request: pb.DeleteOrganizationRequest, context: Context
    ) -> pb.DeleteOrganizationResponse:
        session = current_session()
        org = await service.get_organization(session, parse_uuid("id", request.id))
        await service.delete_organization(session, org)
        return pb.DeleteOrganizationResponse()

    async def AddMember(
        self, request: pb.AddMemberRequest, context: Context
    ) -> pb.AddMemberResponse:
        member, username = await service.add_member(
            current_session(),
            parse_uuid("organization_id", request.organization_id),
            parse_uuid("user_id", request.user_id),
        )
        return pb.AddMemberResponse(member=mappers.member(member, username))

    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, context: Context
    ) -> pb.RemoveMemberResponse:
        await service.remove_member(
            current_session(),
            parse_uuid("organization_id", request.organization_id),
            parse_uuid("user_id", request.user_id),
        )
        return pb.RemoveMemberResponse()

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: Context
    ) -> pb.ListMembersResponse:
        page = await service.list_members(
            current_session(),
            parse_uuid("organization_id", request.organization_id),
            page_size=page_size(request.page_size),
            page_token=request.page_token,
        )
        return pb.ListMembersResponse(
            members=[mappers.member(m, username) for m, username in page.items],
            next_page_token=page.next_page_token,
        )

    async def CheckMembership(
        self, request: pb.CheckMembershipRequest, context: Context
    ) -> pb.CheckMembershipResponse:
        is_member = await service.check_membership(
            current_session(),
            parse_uuid("organization_id", request.organization_id),
            parse_uuid("user_id", request.user_id),
        )
        return pb.CheckMembershipResponse(is_member=is_member)

    async def UpsertUserFromGitHub(
        self, request: pb.UpsertUserFromGitHubRequest, context: Context
    ) -> pb.UpsertUserFromGitHubResponse:
        if request.access_token_expires_at < 0:
            raise InvalidArgument(
                "access_token_expires_at must not be negative", field="access_token_expires_at"
            )
        profile = service.GitHubProfile(
            id=require_positive("github_user_id", request.github_user_id),
            login=require_text("login", request.login, max_length=39),
            email=request.email.strip() or None,
            email_verified=request.email_verified,
            avatar_url=request.avatar_url or None,
            access_token=require_text("access_token", request.access_token, max_length=4096),
            access_token_expires_at=request.access_token_expires_at or None,
            refresh_token=request.refresh_token or None,
            public_profile=(
                MessageToDict(request.profile) if request.HasField("profile") else None
            ),
        )
        user, created = await service.upsert_user_from_github(
            current_session(), profile, self.cipher
        )
        return pb.UpsertUserFromGitHubResponse(user=mappers.user(user), created=created)

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        user = await service.get_user(current_session(), parse_uuid("id", request.id))
        return pb.GetUserResponse(user=mappers.user(user))

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: Context
    ) -> pb.DeleteUserResponse:
        await service.delete_user(current_session(), parse_uuid("id", request.id))
        return pb.DeleteUserResponse()
