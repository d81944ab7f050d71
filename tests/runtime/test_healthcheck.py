"""`python -m perpnet.runtime.healthcheck`: what container healthchecks run (exit 0 if SERVING)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from perpnet.runtime.grpc_server import serve
from perpnet.runtime.healthcheck import check, check_http, main

from .example_service import Example, ExampleSettings

FAST = {"PERPNET_GRPC_PORT": "0", "PERPNET_METRICS_PORT": "0", "PERPNET_HEALTH_INTERVAL_S": "0.05"}


def test_grpc_health_follows_readiness() -> None:
    async def scenario() -> None:
        service = Example(ExampleSettings.from_env("example", FAST))
        running = asyncio.create_task(serve(service, handle_signals=False))
        while service.grpc_port == 0:
            await asyncio.sleep(0.01)
        port = service.grpc_port
        assert await asyncio.to_thread(check, port) == "NOT_SERVING"
        service.ready_now = True
        for _ in range(200):
            if await asyncio.to_thread(check, port) == "SERVING":
                break
            await asyncio.sleep(0.02)
        assert await asyncio.to_thread(main, [str(port)]) == 0
        service.request_stop()
        await running
        assert (await asyncio.to_thread(check, port, timeout=0.5)).startswith("UNREACHABLE")
        assert await asyncio.to_thread(main, [str(port)]) == 1

    asyncio.run(scenario())


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_readiness(http_server: str) -> None:
    assert check_http(http_server + "/readyz") == "HTTP_200"
    assert main([http_server + "/readyz"]) == 0
    assert check_http(http_server + "/other") == "HTTP_503"
    assert main([http_server + "/other"]) == 1


def test_bad_arguments_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "perpnet.runtime.healthcheck", "not-a-port"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "usage" in done.stderr
