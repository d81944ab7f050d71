"""The gateway's settings: the shared exchange settings, plus HTTP, backend and stream limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from perpnet.core.typed_data import Domain
from perpnet.runtime.config import Port, Range, Seconds, ServiceSettings
from perpnet.runtime.follower import ExchangeSettings

HTTP_PORT = 8080


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(ExchangeSettings):
    """PERPNET_GATEWAY_<FIELD> or PERPNET_<FIELD>; the runtime's lookup rules.

    The exchange fields (chain id, verifying contract, oracle signers) must be
    the sequencer's: every signature is checked against that domain.
    """

    http_port: Port = HTTP_PORT
    # grpc: the matcher and sequencer services; local: the core in-process (tests, demos)
    backend: Literal["grpc", "local"] = "grpc"
    ws_queue: Annotated[int, Range(1, 100_000)] = 256  # messages buffered per WebSocket client
    book_levels: Annotated[int, Range(1, 1000)] = 20
    book_interval_s: Seconds = 0.2  # how often subscribed books are polled (grpc backend)
    rpc_timeout_s: Seconds = 5.0
    recent_trades: Annotated[int, Range(0, 100_000)] = 1000  # kept per market for GET trades

    def domain(self) -> Domain:
        """The signing domain (ConfigError if the contract address is malformed)."""
        return self.exchange_config().domain

    def database_of(self, service: str) -> str:
        """The database URL that `service` itself uses (the gateway reads its tables)."""
        return ServiceSettings.from_env(service, self.env).database_url
