#!/usr/bin/env bash
# CI for the containers: bring the compose stack up, test it from outside, tear it down.
#
#   bash scripts/compose-test.sh [pytest args]
#
# 1. a Docker engine and local stand-ins for the public images
#    (../shared/tools/offline-docker, or $OFFLINE_DOCKER: these machines reach
#    no container registry; elsewhere set OFFLINE_DOCKER=none to use the real ones);
# 2. `docker-compose config`, then build the perpnet image (once: every service uses it);
# 3. `docker-compose up -d` on ports of its own (a stack you run on the defaults is
#    left alone) and wait, bounded, until every container is healthy;
# 4. pytest tests/compose: the end-to-end flow through the gateway and L1, Prometheus
#    targets and series, kill -9 and restart of sequencer, prover and redis;
# 5. always: `docker-compose down -v` (logs of every service are printed on failure).
# Grafana (docker-compose.grafana.yml) is not brought up: no stand-in exists for it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

started=$(date +%s)
phase_started=$started
phase() {
  local now; now=$(date +%s)
  echo "[compose-test] $(printf '%4ds' $((now - started))) $*" >&2
  phase_started=$now
}
elapsed() { echo $(( $(date +%s) - phase_started )); }

OFFLINE_DOCKER=${OFFLINE_DOCKER:-$ROOT/../shared/tools/offline-docker}
export COMPOSE_PROJECT_NAME=${PERPNET_CI_PROJECT:-perpnet-ci}
# CI's own published ports (override any of them from the environment)
export GATEWAY_PORT=${GATEWAY_PORT:-18080} ANVIL_PORT=${ANVIL_PORT:-18545}
export PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090} PUBLISH_ADDR=127.0.0.1
export PROVER_REPLICAS=${PROVER_REPLICAS:-2}
COMPOSE=(docker-compose -f docker-compose.yml)
HEALTH_TIMEOUT_S=${HEALTH_TIMEOUT_S:-300}
TEST_TIMEOUT_S=${TEST_TIMEOUT_S:-600}

if [ "$OFFLINE_DOCKER" != none ]; then
  phase "engine and stand-in images ($OFFLINE_DOCKER)"
  "$OFFLINE_DOCKER/ensure-engine.sh"
  "$OFFLINE_DOCKER/build-standins.sh" .
fi
command -v docker-compose >/dev/null || { echo "docker-compose is required" >&2; exit 1; }

phase "host test environment (.venv)"
if [ ! -x .venv/bin/pytest ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
fi

phase "docker-compose config"
"${COMPOSE[@]}" config -q
docker-compose -f docker-compose.yml -f docker-compose.grafana.yml config -q

teardown() {
  status=$?
  trap - EXIT INT TERM
  if [ $status -ne 0 ]; then
    echo "[compose-test] failed (exit $status): state and logs of the stack follow" >&2
    "${COMPOSE[@]}" ps >&2 || true
    "${COMPOSE[@]}" logs --no-color --tail=80 >&2 || true
  fi
  phase "docker-compose down -v"
  "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  echo "[compose-test] finished in $(( $(date +%s) - started )) s, exit $status" >&2
  exit $status
}
trap teardown EXIT
trap 'exit 130' INT TERM

phase "build the perpnet image"
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true  # a previous run's leftovers
"${COMPOSE[@]}" build migrate  # the one image every perpnet service runs
echo "[compose-test] image built in $(elapsed) s" >&2

phase "docker-compose up -d (provers: $PROVER_REPLICAS)"
"${COMPOSE[@]}" up -d --no-build --scale "prover=$PROVER_REPLICAS"

phase "waiting for every container to be healthy (at most ${HEALTH_TIMEOUT_S} s)"
deadline=$(( $(date +%s) + HEALTH_TIMEOUT_S ))
while :; do
  waiting=()
  for id in $("${COMPOSE[@]}" ps -q); do
    read -r name state health code < <(docker inspect -f \
      '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}' "$id")
    case "$state/$health" in
      running/healthy | running/none) ;;
      exited/none)  # the one-shot jobs (migrate, deployer) must have succeeded
        [ "$code" = 0 ] || { echo "[compose-test] $name exited with $code" >&2; exit 1; } ;;
      *) waiting+=("${name#/}:$state/$health") ;;
    esac
  done
  [ ${#waiting[@]} -eq 0 ] && break
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "[compose-test] not healthy after ${HEALTH_TIMEOUT_S} s: ${waiting[*]}" >&2
    exit 1
  fi
  sleep 2
done
echo "[compose-test] healthy in $(elapsed) s" >&2
"${COMPOSE[@]}" ps >&2

phase "tests/compose (at most ${TEST_TIMEOUT_S} s)"
export PERPNET_GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT
export PERPNET_L1_RPC_URL=http://127.0.0.1:$ANVIL_PORT
export PERPNET_PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
export PERPNET_COMPOSE="${COMPOSE[*]}"
timeout --signal=INT "$TEST_TIMEOUT_S" .venv/bin/pytest -p no:cacheprovider -m compose \
  tests/compose/compose_e2e.py tests/compose/compose_chaos.py "$@"
echo "[compose-test] tests passed in $(elapsed) s" >&2
