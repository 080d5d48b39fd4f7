from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from polar.repository.v1.repository_pb2 import Repository
from polar_db.models import ProcessedMessage
from polar_kit.errors import NotFound
from polar_kit.grpc import (
    REQUEST_ID_KEY,
    RunningServer,
    ServiceSpec,
    current_request_id,
    current_session,
    run_until_signal,
    start_server,
)
from polar_kit.grpc.auth import (
    ALL,
    DEV_INTERNAL_SECRET,
    GATEWAY,
    METADATA_KEY,
    OPERATOR,
    REPOSITORY,
    SCHEME,
    CallerCredentials,
    caller_key,
    credentials,
    operator_channel,
)
from polar_kit.grpc.auth import (
    channel as auth_channel,
)
from polar_kit.grpc.status import details_of
from polar_kit.secrets import InsecureSecretError
from polar_kit.settings import ServiceSettings
from polar_kit.validation import parse_uuid
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVICE = "polar.test.v1.TestService"
# "pledge": a domain service generated later (`make new-service`), named by its allow-list.
CALLERS = {OPERATOR: ALL, GATEWAY: {"Echo"}, "pledge": {"Echo"}}


class EchoServicer:
    """A servicer like the generated ones would call, over StringValue messages."""

    async def Echo(self, request: StringValue, context: Any) -> StringValue:
        await current_session().execute(text("SELECT 1"))
        return StringValue(value=current_request_id() or "")

    async def Write(self, request: StringValue, context: Any) -> StringValue:
        current_session().add(ProcessedMessage(consumer="grpc-test", message_id=request.value))
        await current_session().flush()
        if request.value.startswith("fail"):
            raise NotFound(f"thing {request.value} not found")
        return request

    async def Boom(self, request: StringValue, context: Any) -> StringValue:
        raise RuntimeError("secret detail")

    async def Outage(self, request: StringValue, context: Any) -> StringValue:
        raise ConnectionRefusedError("database is restarting")

    async def Invalid(self, request: StringValue, context: Any) -> StringValue:
        parse_uuid("thing_id", request.value)
        return request

    async def Missing(self, request: StringValue, context: Any) -> StringValue:
        raise ThingNotFound(request.value)


async def keep(request: Repository, context: Any) -> Repository:
    return request


class ThingNotFound(NotFound):
    RESOURCE_TYPE = "polar.test.v1.Thing"

    def __init__(self, key: str) -> None:
        super().__init__(f"thing {key} not found", resource_name=key)


def add_to_server(servicer: EchoServicer, server: grpc.aio.Server) -> None:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        )
        for name in ("Echo", "Write", "Boom", "Outage", "Invalid", "Missing")
    }
    # A method taking a resource, as an Update method would: its field behaviour is the server's.
    handlers["Keep"] = grpc.unary_unary_rpc_method_handler(
        keep,
        request_deserializer=Repository.FromString,
        response_serializer=Repository.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest_asyncio.fixture(loop_scope="session")
async def server(
    sessionmaker: async_sessionmaker[AsyncSession], kit_settings: ServiceSettings
) -> AsyncIterator[RunningServer]:
    running = await start_server(
        port=0,
        services=[ServiceSpec(SERVICE, add_to_server, EchoServicer(), CALLERS)],
        sessionmaker=sessionmaker,
        settings=kit_settings,
        host="127.0.0.1",
    )
    yield running
    await running.stop(0)


@pytest_asyncio.fixture(loop_scope="session")
async def channel(
    server: RunningServer, kit_settings: ServiceSettings
) -> AsyncIterator[grpc.aio.Channel]:
    async with operator_channel(f"127.0.0.1:{server.port}", kit_settings) as ch:
        yield ch


def call(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )


def trailing_request_id(metadata: Any) -> str | None:
    return dict(metadata or ()).get(REQUEST_ID_KEY)


async def test_request_id_is_taken_from_the_caller_and_echoed(channel: grpc.aio.Channel) -> None:
    rpc = call(channel, "Echo")(StringValue(), metadata=((REQUEST_ID_KEY, "req-123"),))
    assert (await rpc).value == "req-123"
    assert trailing_request_id(await rpc.trailing_metadata()) == "req-123"


async def test_request_id_is_generated_when_missing(channel: grpc.aio.Channel) -> None:
    rpc = call(channel, "Echo")(StringValue())
    generated = (await rpc).value
    assert len(generated) == 32
    assert trailing_request_id(await rpc.trailing_metadata()) == generated


async def test_domain_error_maps_to_its_code_and_rolls_back(
    channel: grpc.aio.Channel, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    def handled() -> float:
        value = REGISTRY.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": "unary",
                "grpc_service": SERVICE,
                "grpc_method": "Write",
                "grpc_code": "NotFound",
            },
        )
        return value or 0.0

    before = handled()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, "Write")(
            StringValue(value="fail-1"), metadata=((REQUEST_ID_KEY, "req-nf"),)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "thing fail-1 not found"
    assert trailing_request_id(caught.value.trailing_metadata()) == "req-nf"
    assert handled() == before + 1

    assert (await call(channel, "Write")(StringValue(value="ok-1"))).value == "ok-1"
    async with sessionmaker() as session:
        written = set(
            await session.scalars(
                select(ProcessedMessage.message_id).where(ProcessedMessage.consumer == "grpc-test")
            )
        )
    assert "ok-1" in written  # committed
    assert "fail-1" not in written  # rolled back


async def test_unexpected_error_is_internal_without_details(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, "Boom")(StringValue())
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"
    assert trailing_request_id(caught.value.trailing_metadata())


async def test_an_outage_is_unavailable_so_callers_retry(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, "Outage")(StringValue())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def failure(channel: grpc.aio.Channel, method: str, value: str = "") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, method)(StringValue(value=value))
    return caught.value


async def test_invalid_argument_names_the_field(channel: grpc.aio.Channel) -> None:
    error = await failure(channel, "Invalid", "x")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(error)
    assert details.field_violations == [("thing_id", "thing_id must be a UUID, got 'x'")]
    assert (details.reason, details.domain) == ("INVALID_ARGUMENT", "polar.test.v1")
    assert trailing_request_id(error.trailing_metadata())  # still there beside the details


async def test_output_only_fields_in_a_request_are_refused_by_the_server(
    channel: grpc.aio.Channel,
) -> None:
    """The server (FieldBehaviorInterceptor), not the servicer, refuses a resource that carries
    fields only the server sets; the same resource without them goes through."""
    keep = channel.unary_unary(
        f"/{SERVICE}/Keep",
        request_serializer=Repository.SerializeToString,
        response_deserializer=Repository.FromString,
    )
    sent = Repository(id="r-1", name="polar", external_id=7)
    sent.modified_at.GetCurrentTime()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keep(sent)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details_of(caught.value).field_violations] == ["id", "modified_at"]
    assert await keep(Repository(name="polar", external_id=7)) == Repository(
        name="polar", external_id=7
    )


async def test_not_found_names_the_resource_and_a_stable_reason(channel: grpc.aio.Channel) -> None:
    error = await failure(channel, "Missing", "t-1")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    details = details_of(error)
    assert (details.resource_type, details.resource_name) == ("polar.test.v1.Thing", "t-1")
    assert details.reason == "THING_NOT_FOUND"


async def test_unavailable_says_when_to_retry(channel: grpc.aio.Channel) -> None:
    details = details_of(await failure(channel, "Outage"))
    assert (details.reason, details.retry_delay_seconds) == ("UNAVAILABLE", 1.0)


async def test_internal_details_say_nothing_more(channel: grpc.aio.Channel) -> None:
    details = details_of(await failure(channel, "Boom"))
    assert details.reason == "INTERNAL"
    assert (details.field_violations, details.resource_name, details.metadata) == ([], "", {})


async def test_read_only_methods_come_from_the_contract() -> None:
    import polar.organization.v1.organization_service_pb2  # noqa: F401  (registers the descriptors)
    from polar_kit.grpc.interceptors import _is_readonly

    service = "/polar.organization.v1.OrganizationService"
    assert _is_readonly(f"{service}/GetOrganization")
    assert _is_readonly(f"{service}/CheckMembership")
    assert not _is_readonly(f"{service}/InstallOrganization")
    assert not _is_readonly(f"/{SERVICE}/Write")  # not in any .proto: a transaction


async def test_health_serving_then_not_serving_on_shutdown(
    channel: grpc.aio.Channel, server: RunningServer
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    await server.health.enter_graceful_shutdown()
    response = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in response.list_services_response.service}
        break
    assert names >= {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


class SlowWorker:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finished = False

    async def run(self, stop: asyncio.Event) -> None:
        self.started.set()
        await stop.wait()
        await asyncio.sleep(0.1)  # finishing the message in hand
        self.finished = True


async def test_sigterm_stops_workers_and_server(
    sessionmaker: async_sessionmaker[AsyncSession], kit_settings: ServiceSettings
) -> None:
    running = await start_server(
        port=0,
        services=[ServiceSpec(SERVICE, add_to_server, EchoServicer(), CALLERS)],
        sessionmaker=sessionmaker,
        settings=kit_settings,
        host="127.0.0.1",
    )
    worker = SlowWorker()
    main = asyncio.create_task(run_until_signal(running, workers=[worker], grace=1))
    await worker.started.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(main, 10)
    assert worker.finished
    async with operator_channel(f"127.0.0.1:{running.port}", kit_settings) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(ch, "Echo")(StringValue(), timeout=1)
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_a_crashed_worker_shuts_down_and_is_reported() -> None:
    class Crashing:
        async def run(self, stop: asyncio.Event) -> None:
            raise ValueError("boom")

    with pytest.raises(RuntimeError, match="worker Crashing failed"):
        await asyncio.wait_for(run_until_signal(None, workers=[Crashing()]), 5)


# --- who may call (issue 10, finding 6) --------------------------------------------------------
# A caller without credentials, with forged, replayed or expired ones, or with another
# caller's identity for a method it is not allowed, is refused before the handler runs.

SECRET = "a-test-internal-secret-of-more-than-32-bytes"


@pytest.fixture(scope="module")
def auth_settings(kit_settings: ServiceSettings) -> ServiceSettings:
    """Outside development mode, with a real secret and reflection off (as deployed)."""
    return kit_settings.model_copy(
        update={
            "dev_mode": False,
            "internal_secret": SecretStr(SECRET),
            "grpc_reflection": False,
        }
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(
    sessionmaker: async_sessionmaker[AsyncSession], auth_settings: ServiceSettings
) -> AsyncIterator[RunningServer]:
    running = await start_server(
        port=0,
        services=[ServiceSpec(SERVICE, add_to_server, EchoServicer(), CALLERS)],
        sessionmaker=sessionmaker,
        settings=auth_settings,
        host="127.0.0.1",
    )
    yield running
    await running.stop(0)


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


async def code_of(ch: grpc.aio.Channel, method: str = "Echo", **kw: object) -> grpc.StatusCode:
    try:
        await call(ch, method)(StringValue(), timeout=5, **kw)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_without_credentials_is_unauthenticated(auth_server: RunningServer) -> None:
    def refused() -> float:
        labels = {
            "grpc_type": "unary",
            "grpc_service": SERVICE,
            "grpc_method": "Echo",
            "grpc_code": "Unauthenticated",
        }
        return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0

    before = refused()
    async with grpc.aio.insecure_channel(target(auth_server)) as ch:
        rpc = call(ch, "Echo")(StringValue(), metadata=((REQUEST_ID_KEY, "req-refused"),))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rpc
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert trailing_request_id(caught.value.trailing_metadata()) == "req-refused"
        bad = ((METADATA_KEY, SCHEME + "v1.operator.99999999999.deadbeef"),)
        assert await code_of(ch, metadata=bad) == grpc.StatusCode.UNAUTHENTICATED
    assert refused() == before + 2  # counted like any other answer


async def test_the_right_caller_gets_through(
    auth_server: RunningServer, auth_settings: ServiceSettings
) -> None:
    async with operator_channel(target(auth_server), auth_settings) as ch:
        assert await code_of(ch) == grpc.StatusCode.OK
    async with auth_channel(target(auth_server), credentials(GATEWAY, auth_settings)) as ch:
        assert await code_of(ch) == grpc.StatusCode.OK


async def test_another_callers_credentials_are_refused_where_not_allowed(
    auth_server: RunningServer, auth_settings: ServiceSettings
) -> None:
    # The gateway may call Echo only; the repository service nothing here.
    async with auth_channel(target(auth_server), credentials(GATEWAY, auth_settings)) as ch:
        assert await code_of(ch, "Write") == grpc.StatusCode.PERMISSION_DENIED
    async with auth_channel(target(auth_server), credentials(REPOSITORY, auth_settings)) as ch:
        assert await code_of(ch) == grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_named_by_an_allow_list_is_an_identity(
    auth_server: RunningServer, auth_settings: ServiceSettings
) -> None:
    async with auth_channel(target(auth_server), credentials("pledge", auth_settings)) as ch:
        assert await code_of(ch) == grpc.StatusCode.OK
        assert await code_of(ch, "Write") == grpc.StatusCode.PERMISSION_DENIED
    # A name no allow-list of this server mentions has no key here: refused as unknown.
    async with auth_channel(target(auth_server), credentials("stranger", auth_settings)) as ch:
        assert await code_of(ch) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(ValueError, match="lower-case"):
        CallerCredentials("Not-A-Name", "key")


async def test_forged_replayed_and_expired_tokens_are_refused(auth_server: RunningServer) -> None:
    wrong_secret = CallerCredentials(OPERATOR, caller_key("another-secret-" * 3, OPERATOR))
    dev_secret = CallerCredentials(OPERATOR, caller_key(DEV_INTERNAL_SECRET, OPERATOR))
    # A gateway key presented under the operator's name.
    borrowed = CallerCredentials(OPERATOR, caller_key(SECRET, GATEWAY))
    good = CallerCredentials(OPERATOR, caller_key(SECRET, OPERATOR))
    async with grpc.aio.insecure_channel(target(auth_server)) as ch:
        for creds in (wrong_secret, dev_secret, borrowed):
            metadata = (creds.metadata(f"/{SERVICE}/Echo"),)
            assert await code_of(ch, metadata=metadata) == grpc.StatusCode.UNAUTHENTICATED
        # A token seen on the wire for one method does not open another.
        replayed = (good.metadata(f"/{SERVICE}/Echo"),)
        assert await code_of(ch, "Write", metadata=replayed) == grpc.StatusCode.UNAUTHENTICATED
        expired = ((METADATA_KEY, SCHEME + good.token(f"/{SERVICE}/Echo", now=1_000_000)),)
        assert await code_of(ch, metadata=expired) == grpc.StatusCode.UNAUTHENTICATED


async def test_health_is_open_and_reflection_is_off(auth_server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(target(auth_server)) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.ServerReflectionInfo(iter([request])):
                pass
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("secret", ["", DEV_INTERNAL_SECRET, "short"])
async def test_no_server_starts_without_a_real_secret(
    secret: str, auth_settings: ServiceSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    insecure = auth_settings.model_copy(update={"internal_secret": SecretStr(secret)})
    with pytest.raises(InsecureSecretError, match="POLAR_INTERNAL_SECRET"):
        await start_server(
            port=0,
            services=[ServiceSpec(SERVICE, add_to_server, EchoServicer(), CALLERS)],
            sessionmaker=sessionmaker,
            settings=insecure,
        )


async def test_a_caller_refuses_missing_or_development_credentials(
    auth_settings: ServiceSettings,
) -> None:
    unset = auth_settings.model_copy(update={"internal_secret": SecretStr("")})
    with pytest.raises(InsecureSecretError, match="POLAR_INTERNAL_SECRET"):
        credentials(GATEWAY, unset)
    dev_key = unset.model_copy(
        update={"internal_caller_key": SecretStr(caller_key(DEV_INTERNAL_SECRET, GATEWAY))}
    )
    with pytest.raises(InsecureSecretError, match="POLAR_INTERNAL_CALLER_KEY"):
        credentials(GATEWAY, dev_key)
    # Its own key, without the secret: what the gateway is given in a deployment.
    own = unset.model_copy(update={"internal_caller_key": SecretStr(caller_key(SECRET, GATEWAY))})
    token = credentials(GATEWAY, own).token("/x.Y/Z")
    assert token.startswith("v1.gateway.")


async def test_a_burst_of_calls_is_served_not_cancelled(channel: grpc.aio.Channel) -> None:
    """A burst bigger than grpc-core's default backlog (1,000 calls the server has not yet
    taken: the aio server takes them one at a time) is served; by default, core cancels
    calls at random past 1,000 (the gateway's stream opens, issue 16)."""
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    answers = await asyncio.gather(
        *(stub.Check(request, timeout=60) for _ in range(2_500)), return_exceptions=True
    )
    failed = [a for a in answers if not isinstance(a, health_pb2.HealthCheckResponse)]
    assert failed == []
