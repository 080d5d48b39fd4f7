"""The gRPC ceiling: OrganizationService answering GetOrganization from memory, no database,
no interceptors. Run as its own process like the service (port from
POLAR_ORGANIZATION_GRPC_PORT); what it reaches is the most any Python gRPC service can on
this machine with the benchmark's client, so it tells the cost of the transport apart from
the cost of the service's own work."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrganizationService"].full_name


async def get_organization(
    request: pb.GetOrganizationRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> pb.GetOrganizationResponse:
    return pb.GetOrganizationResponse(
        organization=organization_pb2.Organization(id=request.id, name="echo")
    )


async def main() -> None:
    server = grpc.aio.server()
    # A generic handler for the one method (the generated servicer wants all of them).
    handler = grpc.unary_unary_rpc_method_handler(
        get_organization,
        request_deserializer=pb.GetOrganizationRequest.FromString,
        response_serializer=pb.GetOrganizationResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE_NAME, {"GetOrganization": handler})]
    )
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(f"127.0.0.1:{os.environ['POLAR_ORGANIZATION_GRPC_PORT']}")
    await server.start()
    await checks.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
