#!/bin/sh
# The perpnet image's entrypoint: bind the signing domain to the deployed rollup, then exec.
#
# Every service that checks or makes signatures (sequencer, matcher, margin,
# oracle, prover, bridge, gateway) must share the EIP-712 domain, whose
# verifying contract is the rollup's address. The one-shot deployer writes
# the deployment file (PERPNET_L1_DEPLOYMENT, on a shared volume); when
# PERPNET_VERIFYING_CONTRACT is not set explicitly, it is read from there.
# PERPNET_WAIT_FOR_DEPLOYMENT=<seconds> waits for the file to appear first.
# PERPNET_WAIT_FOR=host:port[,host:port...] first waits (up to
# PERPNET_WAIT_TIMEOUT_S, default 60) until each accepts TCP connections: for
# the one-shot jobs, whose dependencies (anvil) have no healthcheck.
set -eu
if [ -n "${PERPNET_WAIT_FOR:-}" ]; then
  python - "$PERPNET_WAIT_FOR" "${PERPNET_WAIT_TIMEOUT_S:-60}" <<'PY'
import socket, sys, time
targets, timeout = sys.argv[1].split(","), float(sys.argv[2])
deadline = time.monotonic() + timeout
for target in filter(None, (t.strip() for t in targets)):
    host, port = target.rsplit(":", 1)
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"perpnet-entrypoint: {target} not reachable after {timeout:g} s: {exc}")
            time.sleep(0.5)
PY
fi
file=${PERPNET_L1_DEPLOYMENT:-}
if [ -n "$file" ] && [ -z "${PERPNET_VERIFYING_CONTRACT:-}" ]; then
  waited=0
  while [ ! -s "$file" ] && [ "$waited" -lt "${PERPNET_WAIT_FOR_DEPLOYMENT:-0}" ]; do
    sleep 1; waited=$((waited + 1))
  done
  if [ -s "$file" ]; then
    PERPNET_VERIFYING_CONTRACT=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["addresses"]["rollup"])' "$file")
    export PERPNET_VERIFYING_CONTRACT
  fi
fi
exec "$@"
