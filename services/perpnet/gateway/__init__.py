"""The gateway: the exchange's public REST API (with its OpenAPI document) and WebSocket streams.

- settings: GatewaySettings (PERPNET_GATEWAY_* on top of the runtime's settings)
- signing: the typed-data structs only the gateway verifies (signed cancels)
- errors: core ErrorCode -> HTTP status, in one table; the uniform error body
- ports: what the gateway needs from the rest of the exchange, as protocols
- grpc_backend: those ports over gRPC (matcher, sequencer), Redis and the runtime database
- local: the same ports on the core in-process (tests, demos without the stack)
- records: read-only queries of the runtime tables (orders, batches, proofs, deposits, ...)
- streams: the WebSocket fan-out with bounded per-client queues
- app: the FastAPI application

Run it with `python -m perpnet.gateway`.
"""
