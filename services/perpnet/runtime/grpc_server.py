"""The gRPC service lifecycle shared by every perpnet service.

`serve()` runs one `Service` on a grpc.aio server with the standard health
service, reflection and Prometheus metrics. Health is truthful: every name
reports NOT_SERVING until the service's `ready()` says its dependencies answer
and its state is recovered, and follows `ready()` afterwards (a lost Redis
turns it NOT_SERVING again). Application RPCs get UNAVAILABLE until the first
time `ready()` holds, so no request ever sees half-recovered state.

On SIGTERM/SIGINT: every name turns NOT_SERVING, `stopping` is set (streams
should end), the server stops accepting and drains in-flight RPCs for up to
`shutdown_grace_s`, then the service's resources close and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from perpnet.runtime.config import ConfigError, ServiceSettings, env_name
from perpnet.runtime.gc_pauses import freeze_ready_heap, install_pause_metric
from perpnet.runtime.interceptor import RuntimeInterceptor
from perpnet.runtime.logging import configure_logging
from perpnet.runtime.metrics import start_metrics_server, watch_loop_lag

S = TypeVar("S", bound=ServiceSettings)
T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # proofs and state checkpoints are large
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
# Refuse to share a port: two copies of a service on one port would split traffic silently.
SERVER_OPTIONS = (*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0))

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Service(Generic[S]):
    """A perpnet gRPC service: subclass it, register servicers, say when it is ready.

    Lifecycle hooks, all optional but `register`:
    - register(server): add servicers; return their full names (health, reflection).
    - start(): connect, migrate, recover state. Runs while health says NOT_SERVING;
      it should not fail just because a dependency is down yet (ready() covers that).
    - ready(): do dependencies answer and is state recovered? Polled every
      `health_interval_s`; an exception or timeout counts as not ready.
    - stop(): after the server drained; then `resources` (an AsyncExitStack) closes.
    """

    def __init__(self, settings: S) -> None:
        self.settings = settings
        self.log = logging.getLogger(f"perpnet.{settings.service}")
        self.resources = contextlib.AsyncExitStack()
        self.stopping = asyncio.Event()
        self.grpc_port = 0  # bound ports, known once serving (settings may say 0)
        self.metrics_port = 0
        self._stop_requested = asyncio.Event()
        self._recovered = False

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        raise NotImplementedError

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def stop(self) -> None:
        return None

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does); safe to call twice."""
        if self._stop_requested.is_set():
            self.log.warning("already stopping")
        self._stop_requested.set()

    @property
    def recovered(self) -> bool:
        """True once ready() has held: application RPCs are admitted from then on."""
        return self._recovered


class _Health:
    """Sets every registered name's status together, and only on a change."""

    def __init__(self, names: Iterable[str]) -> None:
        # The stubs lack grpc_health's asyncio servicer, which the package has shipped for years.
        self.servicer: Any = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.names = ("", *names)  # "" is the whole server's health
        self.serving: bool | None = None

    async def set(self, serving: bool) -> bool:
        if serving == self.serving:
            return False
        self.serving = serving
        for name in self.names:
            await self.servicer.set(name, SERVING if serving else NOT_SERVING)
        return True


async def _probe(service: Service[Any], timeout: float) -> str | None:
    """None if the service is ready, else why not (logged once per change, not per poll)."""
    try:
        if await asyncio.wait_for(service.ready(), timeout):
            return None
        return "ready() is false"
    except TimeoutError:
        return f"ready() took over {timeout:g} s"
    except Exception as exc:
        return f"ready() raised {exc!r}"


async def _follow_readiness(service: Service[Any], state: _Health, freeze_heap: bool) -> None:
    interval = service.settings.health_interval_s
    last: tuple[bool, str | None] | None = None
    while True:
        why_not = await _probe(service, max(interval, 1.0))
        ready = why_not is None
        if ready and not service._recovered:
            service._recovered = True
            if freeze_heap:
                service.log.info("heap frozen", extra={"objects": freeze_ready_heap()})
        await state.set(ready)
        if (ready, why_not) != last:  # first poll, then each change of status or reason
            last = (ready, why_not)
            status = "SERVING" if ready else "NOT_SERVING"
            service.log.info("health", extra={"status": status, "reason": why_not})
        await asyncio.sleep(interval)


async def serve(
    service: Service[Any], *, handle_signals: bool = True, freeze_heap: bool = False
) -> None:
    """Run `service` until SIGTERM/SIGINT or request_stop(), then shut it down gracefully.

    `freeze_heap`: freeze the process's heap once the service is first ready
    (perpnet.runtime.gc_pauses); for a process of its own, not one it shares.

    Teardown runs in reverse order of what was set up, however far start-up got:
    drain the server, service.stop(), service.resources, metrics, signal handlers.
    """
    settings = service.settings
    interceptor = RuntimeInterceptor(lambda: service.recovered)
    server = grpc.aio.server(interceptors=[interceptor], options=SERVER_OPTIONS)
    names = tuple(service.register(server))
    health_state = _Health(names)
    health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, server)
    await health_state.set(False)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as teardown:
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, service.request_stop)
                teardown.callback(loop.remove_signal_handler, sig)
        metrics_server, service.metrics_port = _listen(
            lambda: start_metrics_server(settings.bind_host, settings.metrics_port),
            "metrics",
            settings,
            "metrics_port",
        )
        teardown.callback(metrics_server.shutdown)
        install_pause_metric()
        lag = asyncio.create_task(watch_loop_lag())
        teardown.callback(lag.cancel)
        teardown.push_async_callback(service.resources.aclose)
        teardown.push_async_callback(service.stop)
        service.grpc_port = _listen(
            lambda: server.add_insecure_port(f"{settings.bind_host}:{settings.grpc_port}"),
            "gRPC",
            settings,
            "grpc_port",
        )
        follower: list[asyncio.Task[None]] = []
        teardown.push_async_callback(
            _shut_down, service, server, interceptor, health_state, follower
        )
        await server.start()
        service.log.info(
            "listening",
            extra={
                "grpc_port": service.grpc_port,
                "metrics_port": service.metrics_port,
                "services": list(names),
            },
        )
        if await _until_stop(service, service.start()):
            follower.append(
                asyncio.create_task(_follow_readiness(service, health_state, freeze_heap))
            )
            await service._stop_requested.wait()
    service.log.info("stopped")


async def _shut_down(
    service: Service[Any],
    server: grpc.aio.Server,
    interceptor: RuntimeInterceptor,
    health_state: _Health,
    follower: list[asyncio.Task[None]],
) -> None:
    """NOT_SERVING first (and for good), end streams, then drain the server."""
    grace = service.settings.shutdown_grace_s
    service.log.info("shutting down", extra={"grace_s": grace})
    await health_state.servicer.enter_graceful_shutdown()
    service.stopping.set()
    for task in follower:
        task.cancel()
    stopping = asyncio.create_task(server.stop(grace))  # stop accepting, keep in-flight RPCs
    try:
        await asyncio.wait_for(interceptor.drained(), grace)
    except TimeoutError:
        service.log.warning(
            "grace period over: cancelling RPCs", extra={"in_flight": interceptor.in_flight}
        )
    # What is left now is normally health Watch and reflection streams, which
    # never end by themselves and would otherwise hold shutdown for the whole grace.
    await server.stop(None)
    await stopping


class StartupError(RuntimeError):
    """The service cannot start for a reason an operator fixes (a port in use)."""


def _listen(bind: Callable[[], T], what: str, settings: ServiceSettings, field: str) -> T:
    try:
        return bind()
    except (RuntimeError, OSError) as exc:
        port = getattr(settings, field)
        raise StartupError(
            f"cannot listen for {what} on {settings.bind_host}:{port}"
            f" (set {env_name(settings.service, field)}): {exc}"
        ) from None


async def _until_stop(service: Service[Any], work: Coroutine[Any, Any, None]) -> bool:
    """Run a start-up coroutine unless a stop comes first; True if it finished."""
    task = asyncio.create_task(work)
    stop = asyncio.create_task(service._stop_requested.wait())
    await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if task.done():
        task.result()  # a failed start() propagates
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


def run_service(service_type: type[Service[S]], settings_type: type[S], name: str) -> int:
    """The body of `python -m perpnet.<name>`: settings, JSON logs, serve; the exit code."""
    try:
        settings = settings_type.from_env(name)
    except ConfigError as exc:
        configure_logging(name)
        logging.getLogger(f"perpnet.{name}").critical("bad configuration: %s", exc)
        return 2
    configure_logging(name, settings.log_level)

    async def main() -> None:
        await serve(service_type(settings), freeze_heap=settings.gc_freeze)

    try:
        asyncio.run(main())
    except StartupError as exc:
        logging.getLogger(f"perpnet.{name}").critical(str(exc))
        return 1
    except Exception:
        logging.getLogger(f"perpnet.{name}").critical("service failed", exc_info=True)
        return 1
    return 0
