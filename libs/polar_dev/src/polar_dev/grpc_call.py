"""`python -m polar_dev.grpc_call HOST:PORT package.Service/Method '{json}'`: one gRPC call.

For trying the services by hand without grpcurl: the request is the method's input message
written as protobuf JSON (field names as in the .proto or in lowerCamelCase), the answer is
printed the same way. Methods are looked up in the generated code of `polar_proto`. Calls are
signed as the `operator` identity with the internal secret (POLAR_INTERNAL_SECRET, or the
one `make dev` wrote to .dev/env).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from polar_db.devenv import load_dev_env
from polar_kit.grpc.auth import OPERATOR, credentials
from polar_kit.settings import ServiceSettings


def _load_contracts() -> None:
    import polar  # the generated packages register their descriptors on import

    for module in pkgutil.walk_packages(polar.__path__, "polar."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)


def find_method(full_name: str) -> MethodDescriptor:
    service_name, _, method_name = full_name.rpartition("/")
    _load_contracts()
    service = descriptor_pool.Default().FindServiceByName(service_name)
    return service.methods_by_name[method_name]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_dev.grpc_call", description=__doc__)
    parser.add_argument("target", help="host:port of the service")
    parser.add_argument("method", help="e.g. polar.organization.v1.OrganizationService/GetUser")
    parser.add_argument("request", nargs="?", default="{}", help="the request as JSON")
    args = parser.parse_args(argv)
    try:
        method = find_method(args.method)
    except KeyError:
        print(f"unknown method {args.method!r}", file=sys.stderr)
        return 2
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(args.request, request_class())
    path = f"/{method.containing_service.full_name}/{method.name}"
    # The `operator` identity, signed with the internal secret of `make dev`'s .dev/env (or
    # POLAR_INTERNAL_SECRET): the services refuse unauthenticated calls.
    load_dev_env()
    signed = credentials(OPERATOR, ServiceSettings(), fail_closed=False).metadata(path)
    with grpc.insecure_channel(args.target) as channel:
        call: grpc.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            response = call(request, timeout=10, metadata=(signed,))
        except grpc.RpcError as err:
            print(f"{err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(response, preserving_proto_field_name=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
