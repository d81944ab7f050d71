"""Client side of the service mesh: channels to peers and a health probe for ready()."""

from __future__ import annotations

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from perpnet.runtime.grpc_server import CHANNEL_OPTIONS


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel (the testnet's network is private) with the runtime's message limits."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


async def is_serving(channel: grpc.aio.Channel, service: str = "", timeout: float = 1.0) -> bool:
    """Whether the peer's standard health service says SERVING; a dependency check for ready()."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
