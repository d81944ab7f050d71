"""`python -m perpnet.runtime.healthcheck PORT [HOST]`: exit 0 if the gRPC server is SERVING.

What a container's healthcheck runs: one call to the standard gRPC health
service (`grpc.health.v1.Health/Check`, the whole server's name "") on
localhost. Exit 0 when the answer is SERVING, 1 otherwise (NOT_SERVING, no
answer within the timeout, connection refused), 2 on bad arguments; the status
goes to stdout, so `docker inspect` shows why a container is unhealthy.
The gateway has no gRPC server: `python -m perpnet.runtime.healthcheck URL`
(an http:// URL, its /readyz) exits 0 on HTTP 200 and 1 otherwise.
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: python -m perpnet.runtime.healthcheck PORT [HOST]  (gRPC health; host 127.0.0.1)\n"
    "       python -m perpnet.runtime.healthcheck http://HOST:PORT/readyz  (HTTP 200)"
)
TIMEOUT_S = 3.0


def check(port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT_S) -> str:
    """The server's health status name (SERVING, NOT_SERVING, ...) or why there is none."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return f"UNREACHABLE ({code.name if code is not None else exc})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def check_http(url: str, timeout: float = TIMEOUT_S) -> str:
    """HTTP_200 if GET url answers 200, else the status or the error."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return f"HTTP_{reply.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP_{exc.code}"
    except OSError as exc:
        return f"UNREACHABLE ({exc})"


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0].startswith(("http://", "https://")):
        status = check_http(argv[0])
        print(status)
        return 0 if status == "HTTP_200" else 1
    if not 1 <= len(argv) <= 2 or not argv[0].isdigit() or not 0 < int(argv[0]) < 65536:
        print(USAGE, file=sys.stderr)
        return 2
    status = check(int(argv[0]), argv[1] if len(argv) == 2 else "127.0.0.1")
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
