"""What the runtime does around every RPC: metrics, the readiness gate, and drain tracking.

- Every RPC is counted and timed (perpnet.runtime.metrics).
- Until the service has recovered its state, application RPCs get UNAVAILABLE;
  health and reflection always answer (a starting service must say so).
- RPCs in flight are counted so shutdown can wait for exactly those, and not
  for health Watch or reflection streams, which never end by themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from perpnet.runtime.metrics import HANDLED, HANDLING, STARTED

ALWAYS_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")
NOT_DRAINED = ("/grpc.health.v1.Health/Watch", "/grpc.reflection.")
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic in grpc-stubs only
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


def _rpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def _code_name(context: Context) -> str:
    code: Any = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


def _failure(exc: BaseException) -> str:
    """What the client sees when a handler raises instead of returning or aborting."""
    return "CANCELLED" if isinstance(exc, asyncio.CancelledError | GeneratorExit) else "UNKNOWN"


class RuntimeInterceptor(_Interceptor):
    def __init__(self, gate: Callable[[], bool]) -> None:
        self.gate = gate
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drained(self) -> None:
        """Return once no drainable RPC is in flight."""
        await self._idle.wait()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        method: str = handler_call_details.method
        service_name, _, method_name = method.lstrip("/").partition("/")
        call = _Call(self, (_rpc_type(handler), service_name, method_name), method)
        kind = next(k for k in _KINDS if getattr(handler, k) is not None)
        behavior = getattr(handler, kind)
        wrap = call.wrap_stream if handler.response_streaming else call.wrap_unary
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        wrapped: grpc.RpcMethodHandler[Any, Any] = make(
            wrap(behavior),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return wrapped


class _Call:
    """One method's labels, and the wrappers that record how each call of it ends."""

    __slots__ = ("drained", "gated", "labels", "owner")

    def __init__(self, owner: RuntimeInterceptor, labels: tuple[str, str, str], method: str):
        self.owner = owner
        self.labels = labels
        self.gated = not method.startswith(ALWAYS_OPEN)
        self.drained = not method.startswith(NOT_DRAINED)

    async def _enter(self, context: Context) -> float:
        STARTED.labels(*self.labels).inc()
        started = time.perf_counter()
        if self.drained:
            self.owner.in_flight += 1
            self.owner._idle.clear()
        if self.gated and not self.owner.gate():
            self._finish(started, "UNAVAILABLE")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "service is starting")
        return started

    def _finish(self, started: float, code: str) -> None:
        HANDLING.labels(*self.labels).observe(time.perf_counter() - started)
        HANDLED.labels(*self.labels, code).inc()
        if self.drained:
            self.owner.in_flight -= 1
            if self.owner.in_flight == 0:
                self.owner._idle.set()

    def wrap_unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: Context) -> Any:
            started = await self._enter(context)
            try:
                response = await behavior(request, context)
            except grpc.aio.AbortError:
                self._finish(started, _code_name(context))
                raise
            except BaseException as exc:
                self._finish(started, _failure(exc))
                raise
            self._finish(started, _code_name(context))
            return response

        return call

    def wrap_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):  # a coroutine that uses context.write()
            return self.wrap_unary(behavior)

        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            started = await self._enter(context)
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                self._finish(started, _code_name(context))
                raise
            except BaseException as exc:
                self._finish(started, _failure(exc))
                raise
            self._finish(started, _code_name(context))

        return call
