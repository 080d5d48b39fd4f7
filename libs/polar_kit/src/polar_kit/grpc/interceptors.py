"""Server interceptors. Each one runs every RPC inside an async context manager (`scope`).

Order at the server, outermost first: request id, metrics, caller
authentication (polar_kit.grpc.auth), errors, required fields, unit of work. The error
mapper sits inside metrics so the recorded code is the one the caller sees, and outside the
unit of work so a failed commit is mapped too.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias, TypeVar, cast

import grpc
import grpc.aio
import structlog
from google.protobuf import descriptor_pool
from google.protobuf.descriptor_pb2 import MethodOptions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from polar_kit.errors import DomainError, is_transient
from polar_kit.grpc.context import request_id_var, session_var
from polar_kit.grpc.status import domain_of, rich_status
from polar_kit.metrics import RpcMetrics, grpc_type_of, rpc_metrics
from polar_kit.validation import check_field_behavior

log = structlog.get_logger(__name__)

REQUEST_ID_KEY = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Strings: the stubs make these generic, the runtime classes are not subscriptable.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class ScopeInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the handler of every RPC so that it runs inside `self.scope(method, context)`."""

    def scope(self, method: str, context: Context) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        return _wrap(handler, details.method, self.scope)


Scope = Callable[[str, Context], AbstractAsyncContextManager[None]]


def _behavior(handler: Handler) -> Any:
    # The stubs describe sync handlers; on grpc.aio they are coroutines / async generators.
    if handler.response_streaming:
        return handler.unary_stream or handler.stream_stream
    return handler.unary_unary or handler.stream_unary


def _replaced(handler: Handler, unary: Any, streaming: Any) -> Handler:
    """A handler of `handler`'s kind and serializers that runs `unary` or `streaming`."""
    if handler.response_streaming:
        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
        return factory(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    factory = (
        grpc.stream_unary_rpc_method_handler
        if handler.request_streaming
        else grpc.unary_unary_rpc_method_handler
    )
    return factory(
        unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap(handler: Handler, method: str, scope: Scope) -> Handler:
    behavior: Any

    async def unary(request: Any, context: Context) -> Any:
        async with scope(method, context):
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

    async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
        async with scope(method, context):
            responses = behavior(request, context)
            if inspect.isawaitable(responses):  # it writes with context.write (health Watch)
                await responses
                return
            async for response in responses:
                yield response

    behavior = _behavior(handler)
    return _replaced(handler, unary, streaming)


def _incoming_request_id(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _VALID_REQUEST_ID.match(value):
            return value
    return None


class RequestIdInterceptor(ScopeInterceptor):
    """Takes `x-request-id` from the caller (or makes one), binds it to logs, echoes it back."""

    @asynccontextmanager
    async def scope(self, method: str, context: Context) -> AsyncIterator[None]:
        request_id = _incoming_request_id(context) or uuid.uuid4().hex
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        token = request_id_var.set(request_id)
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id, rpc=method):
                yield
        finally:
            request_id_var.reset(token)


def _code_name(code: Any) -> str:
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    for status in grpc.StatusCode:  # the aio context may report the raw integer
        if status.value[0] == code:
            return str(status.name)
    return "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """go-grpc-prometheus' server metrics (polar_kit.metrics): started, handled by code,
    messages received and sent, handling time; labelled grpc_type/grpc_service/grpc_method."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        kind = grpc_type_of(handler.request_streaming, handler.response_streaming)
        return cast(
            "grpc.RpcMethodHandler[_Req, _Resp]",
            _measured(handler, rpc_metrics("server", kind, details.method)),
        )


def _measured(handler: Handler, m: RpcMetrics) -> Handler:
    behavior: Any

    async def counted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            m.received.inc()
            yield request

    def begin(request: Any) -> tuple[Any, float]:
        m.started.inc()
        if handler.request_streaming:
            return counted(request), time.perf_counter()
        m.received.inc()
        return request, time.perf_counter()

    async def unary(request: Any, context: Context) -> Any:
        request, start = begin(request)
        code = "CANCELLED"  # unless it ends otherwise: the client or a shutdown cancelled it
        try:
            result = behavior(request, context)
            response = await result if inspect.isawaitable(result) else result
            code = _code_name(context.code())
            m.sent.inc()
            return response
        except grpc.aio.AbortError:
            code = _code_name(context.code())
            raise
        finally:
            m.handled(code, time.perf_counter() - start)

    async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
        request, start = begin(request)
        code = "CANCELLED"
        try:
            responses = behavior(request, context)
            if inspect.isawaitable(responses):
                # It writes with context.write (grpc.health Watch): its messages are not seen.
                await responses
            else:
                async for response in responses:
                    m.sent.inc()
                    yield response
            code = _code_name(context.code())
        except grpc.aio.AbortError:
            code = _code_name(context.code())
            raise
        finally:
            m.handled(code, time.perf_counter() - start)

    behavior = _behavior(handler)
    return _replaced(handler, unary, streaming)


class ErrorInterceptor(ScopeInterceptor):
    """DomainError -> its status code; anything unexpected -> INTERNAL without leaking details.

    Every status carries google.rpc details (polar_kit.grpc.status): the one place they are
    attached, so every service's errors have the same shape."""

    @asynccontextmanager
    async def scope(self, method: str, context: Context) -> AsyncIterator[None]:
        domain = domain_of(method)
        try:
            yield
        except grpc.aio.AbortError:
            raise  # the handler already chose a status
        except DomainError as exc:
            log.info("rpc failed", code=exc.code.name, error=exc.message)
            await _abort(context, exc.code, exc.message, domain, exc)
        except Exception as exc:
            if is_transient(exc):
                log.warning("rpc failed, dependency unavailable", error=repr(exc))
                unavailable = grpc.StatusCode.UNAVAILABLE
                await _abort(context, unavailable, "temporarily unavailable; retry", domain)
            log.exception("unhandled error in rpc")
            await _abort(context, grpc.StatusCode.INTERNAL, "internal error", domain)


async def _abort(
    context: Context,
    code: grpc.StatusCode,
    message: str,
    domain: str,
    error: DomainError | None = None,
) -> None:
    # abort() replaces trailing metadata: keep what was set (the request id), add the details.
    details = rich_status(code, message, domain=domain, error=error)
    await context.abort(code, message, (*(context.trailing_metadata() or ()), details))


class FieldBehaviorInterceptor(grpc.aio.ServerInterceptor):
    """Every request's field behaviour (google.api.field_behavior in the .proto: REQUIRED set,
    OUTPUT_ONLY unset) is checked here, before the handler and its transaction: INVALID_ARGUMENT
    with a field violation each (polar_kit.validation.check_field_behavior; mapped by the
    ErrorInterceptor, outside this one)."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(details)
        if handler is None or handler.request_streaming:
            return handler
        behavior: Any = handler.unary_unary or handler.unary_stream

        async def unary(request: Any, context: Context) -> Any:
            check_field_behavior(request)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            check_field_behavior(request)
            async for response in behavior(request, context):
                yield response

        wrap: Any = (
            grpc.unary_stream_rpc_method_handler
            if handler.response_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return cast(
            "grpc.RpcMethodHandler[_Req, _Resp]",
            wrap(
                streaming if handler.response_streaming else unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            ),
        )


class UnitOfWorkInterceptor(ScopeInterceptor):
    """One AsyncSession per RPC (see current_session()); commit on success, rollback on error.

    A method the contract declares read-only (`option idempotency_level = NO_SIDE_EFFECTS`)
    gets an autocommit session instead: its reads need no BEGIN/COMMIT, which saves two of
    the three database round trips of a typical Get.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        engine = sessionmaker.kw["bind"]
        self._readonly_sessionmaker = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    @asynccontextmanager
    async def scope(self, method: str, context: Context) -> AsyncIterator[None]:
        if method.startswith("/grpc."):  # health, reflection: no database
            yield
            return
        readonly = _is_readonly(method)
        maker = self._readonly_sessionmaker if readonly else self._sessionmaker
        async with maker() as session:
            token = session_var.set(session)
            try:
                yield
                if not readonly:
                    await session.commit()
            except BaseException:
                if not readonly:
                    await session.rollback()
                raise
            finally:
                session_var.reset(token)


@functools.cache
def _is_readonly(method: str) -> bool:
    """`/pkg.Service/Method` declared NO_SIDE_EFFECTS in its .proto (generated code loaded)."""
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", "."))
    except KeyError:
        return False
    return bool(descriptor.GetOptions().idempotency_level == MethodOptions.NO_SIDE_EFFECTS)
