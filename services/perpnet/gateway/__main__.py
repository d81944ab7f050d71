"""`python -m perpnet.gateway`: the REST/WebSocket gateway on uvicorn, metrics beside it.

Settings from the environment (perpnet.gateway.settings); JSON logs; SIGTERM
stops accepting, lets in-flight requests finish (up to the grace period) and
exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace

import uvicorn

from perpnet.core.state import ExchangeConfig
from perpnet.gateway.app import create_app
from perpnet.gateway.ports import Backend
from perpnet.gateway.records import DatabaseRecords
from perpnet.gateway.settings import GatewaySettings
from perpnet.runtime.config import ConfigError
from perpnet.runtime.gc_pauses import freeze_ready_heap, install_pause_metric
from perpnet.runtime.logging import configure_logging
from perpnet.runtime.metrics import start_metrics_server, watch_loop_lag


def build_backend(settings: GatewaySettings) -> Backend:
    """The backend the settings name: the running services, or the core in-process."""
    if settings.backend == "local":
        from perpnet.gateway.local import LocalExchange

        domain = settings.domain()
        records = DatabaseRecords(
            {s: settings.database_of(s) for s in ("matcher", "sequencer", "bridge")}, domain
        )
        return LocalExchange(
            _local_config(settings),
            records,
            book_levels=settings.book_levels,
        )
    from perpnet.gateway.grpc_backend import GrpcBackend

    return GrpcBackend(settings)


def _local_config(settings: GatewaySettings) -> ExchangeConfig:
    """The settings' exchange; without oracle signers, the testkit's (so demos can post prices)."""
    config = settings.exchange_config()
    if config.oracle_signers:
        return config
    from perpnet.testkit import ORACLE_KEYS

    return replace(config, oracle_signers=frozenset(k.address for k in ORACLE_KEYS))


async def _serve(settings: GatewaySettings) -> None:
    """Build the backend inside the server's event loop: gRPC aio channels belong to one loop."""
    app = create_app(build_backend(settings), settings)
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.http_port,
        log_config=None,  # keep the runtime's JSON logging
        http="httptools",  # a dependency: the C parser, not h11's pure Python
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        ws_max_queue=settings.ws_queue,
    )
    server = uvicorn.Server(config)
    watchers = [asyncio.create_task(watch_loop_lag())]
    if settings.gc_freeze:
        watchers.append(asyncio.create_task(_freeze_once_started(server)))
    await server.serve()
    for task in watchers:
        task.cancel()


async def _freeze_once_started(server: uvicorn.Server) -> None:
    """The runtime's heap freeze (perpnet.runtime.gc_pauses), once uvicorn's start-up is done."""
    while not server.started:
        await asyncio.sleep(0.1)
    logging.getLogger("perpnet.gateway").info("heap frozen", extra={"objects": freeze_ready_heap()})


def main() -> int:
    try:
        settings = GatewaySettings.from_env("gateway")
        settings.domain()
    except ConfigError as exc:
        configure_logging("gateway")
        logging.getLogger("perpnet.gateway").critical("bad configuration: %s", exc)
        return 2
    configure_logging("gateway", settings.log_level)
    metrics, _port = start_metrics_server(settings.bind_host, settings.metrics_port)
    install_pause_metric()
    try:
        asyncio.run(_serve(settings))
    finally:
        metrics.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
