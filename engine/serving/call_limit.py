"""The concurrent-call limit, with room kept for health and liveness checks.

gRPC's own `maximum_concurrent_rpcs` counts every call alike, so calls that hold a slot (streams
that never send, say) could make health checks fail exactly when they matter. Here every call but
the liveness checks counts against `limit` and beyond it ends RESOURCE_EXHAUSTED at once, while
gRPC's own limit is set `LIVENESS_RESERVE` higher: liveness calls (unary and quick) always find
room, and memory for requests stays bounded by gRPC's limit x the message size.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import grpc

# Unary calls that only say whether the server is up: never refused by `limit`.
LIVENESS_METHODS = frozenset({
    "/grpc.health.v1.Health/Check",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/inference.GRPCInferenceService/ModelReady",
})  # fmt: skip
LIVENESS_RESERVE = 32

_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class CallLimit(grpc.aio.ServerInterceptor):
    """Counts the calls in progress (liveness checks aside); the one past `limit` is refused."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    @property
    def grpc_limit(self) -> int:
        """What to give gRPC's `maximum_concurrent_rpcs`: the limit plus the liveness reserve."""
        return self.limit + LIVENESS_RESERVE

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method in LIVENESS_METHODS:
            return handler
        kind = next(k for k in _FACTORIES if getattr(handler, k) is not None)
        return _FACTORIES[kind](
            self._counted(getattr(handler, kind)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _enter(self, context: grpc.aio.ServicerContext) -> None:
        if self.open >= self.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Concurrent RPC limit of {self.limit} calls reached (a stream is one; "
                "--max-concurrent-rpcs); retry later",
            )
        self.open += 1

    def _counted(self, behavior):
        """`behavior` counted while it runs (an async generator stays one while it streams)."""
        if inspect.isasyncgenfunction(behavior):

            async def stream(request, context):
                await self._enter(context)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    self.open -= 1

            return stream

        async def call(request, context):
            await self._enter(context)
            try:
                return await behavior(request, context)
            finally:
                self.open -= 1

        return call
