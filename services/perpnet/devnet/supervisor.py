"""Start, record, inspect and stop the devnet's processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from perpnet.devnet.plan import Plan
from perpnet.l1.anvil import BLOCK_GAS_LIMIT, DEV_KEY, find_anvil, rpc
from perpnet.runtime.db import upgrade
from perpnet.runtime.localproc import LocalProcessError, spawn, start_redis, wait_for_port

Report = Callable[[str], None]


class DevnetError(RuntimeError):
    """The devnet cannot do what was asked; the message says what to do."""


@dataclass
class Started:
    name: str
    pid: int
    log: str
    service: str = ""


def alive(pid: int) -> bool:
    try:  # reap it if it is our own exited child (a zombie still answers kill 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(plan: Plan) -> list[Started]:
    if not plan.record.exists():
        return []
    return [Started(**row) for row in json.loads(plan.record.read_text())["processes"]]


def _save(plan: Plan, processes: list[Started]) -> None:
    plan.record.write_text(json.dumps({"processes": [asdict(p) for p in processes]}, indent=2))


def running(plan: Plan) -> list[Started]:
    return [p for p in load(plan) if alive(p.pid)]


def up(plan: Plan, report: Report, health_timeout_s: float = 60.0) -> list[Started]:
    """Start everything; on any failure stop what was started and raise DevnetError."""
    if running(plan):
        raise DevnetError(
            f"a devnet is already running from {plan.directory}: `perpnet devnet down`"
        )
    plan.directory.mkdir(parents=True, exist_ok=True)
    logs = plan.directory / "logs"
    started: list[Started] = []
    try:
        report("redis-server")
        redis = start_redis(plan.directory / "redis", port=plan.redis_port)
        started.append(Started("redis", redis.pid, str(redis.log_path)))
        _save(plan, started)
        report("anvil")
        anvil = _start_anvil(plan, logs)
        started.append(anvil)
        _save(plan, started)
        report("contracts")
        _deploy(plan)
        report("database")
        upgrade(plan.environment()["PERPNET_DATABASE_URL"])  # once, before services race to it
        plan.env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in sorted(plan.environment().items()))
        )
        for name, service in plan.processes():
            report(name)
            process = spawn(
                name,
                [sys.executable, "-m", f"perpnet.{service}"],
                logs / f"{name}.log",
                env={**os.environ, **plan.process_env(name, service)},
            )
            started.append(Started(name, process.pid, str(process.log_path), service))
            _save(plan, started)
        _wait_healthy(plan, started, report, health_timeout_s)
    except (LocalProcessError, DevnetError, OSError) as exc:
        down(plan, report)
        raise DevnetError(str(exc)) from exc
    except BaseException:
        down(plan, report)
        raise
    return started


def _start_anvil(plan: Plan, logs: Path) -> Started:
    try:
        binary = find_anvil()
    except Exception as exc:  # AnvilNotFoundError names the install command
        raise DevnetError(str(exc)) from exc
    argv = [binary, "--host", "127.0.0.1", "--port", str(plan.anvil_port)]
    argv += ["--block-time", f"{plan.block_time_s:g}", "--gas-limit", str(BLOCK_GAS_LIMIT)]
    argv += ["--state", str(plan.directory / "anvil-state.json")]
    process = spawn("anvil", argv, logs / "anvil.log")
    wait_for_port(process, "127.0.0.1", plan.anvil_port, timeout=30.0)
    deadline = time.monotonic() + 30.0
    while True:
        try:
            rpc(plan.rpc_url, "eth_chainId")
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                raise DevnetError(f"anvil did not answer on {plan.rpc_url}: {exc}") from exc
            time.sleep(0.2)
    return Started("anvil", process.pid, str(process.log_path))


def _deploy(plan: Plan) -> None:
    from web3 import Web3

    from perpnet.l1.client import Sender
    from perpnet.l1.compile import DEFAULT_BUFFERS, STATEMENT_LIMIT_VARIABLES, Buffers
    from perpnet.l1.deploy import TESTNET_GRACE_PERIOD_S, deploy

    w3 = Web3(Web3.HTTPProvider(plan.rpc_url))
    sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    grace = TESTNET_GRACE_PERIOD_S if plan.grace_period_s is None else plan.grace_period_s
    # the contracts take the statements the sequencer may cut: one knob for both
    env = {**os.environ, **plan.extra_env}
    name = next((name for name in STATEMENT_LIMIT_VARIABLES if name in env), None)
    buffers = DEFAULT_BUFFERS
    if name is not None:
        try:
            buffers = Buffers.for_statement(int(env[name]))
        except ValueError as exc:
            raise DevnetError(f"{name}={env[name]}: {exc}") from exc
    deploy(
        w3,
        sender,
        path=plan.deployment,
        rpc_url=plan.rpc_url,
        grace_period=grace,
        buffers=buffers,
    )


def _wait_healthy(plan: Plan, started: list[Started], report: Report, timeout_s: float) -> None:
    from perpnet.devnet.status import health

    deadline = time.monotonic() + timeout_s
    waiting = [p for p in started if p.service]
    while waiting:
        for p in list(waiting):
            if not alive(p.pid):
                tail = Path(p.log).read_text(errors="replace")[-2000:]
                raise DevnetError(f"{p.name} exited during start; its log ends:\n{tail}")
            if health(plan, p) == "SERVING":
                waiting.remove(p)
                report(f"{p.name} serving")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(p.name for p in waiting)
            raise DevnetError(
                f"not healthy after {timeout_s:.0f} s: {names} (see {plan.directory}/logs)"
            )
        time.sleep(0.5)


def kill(plan: Plan, name: str, sig: signal.Signals = signal.SIGKILL) -> Started:
    """Signal one recorded process (and its group) and wait until it is gone: a chaos drill."""
    process = _recorded(plan, name)
    _signal_group(process.pid, sig)
    deadline = time.monotonic() + 15.0
    while alive(process.pid):
        if time.monotonic() > deadline:
            raise DevnetError(f"{name} (pid {process.pid}) outlived {sig.name}")
        time.sleep(0.05)
    return process


def restart(
    plan: Plan, name: str, report: Report = lambda _: None, health_timeout_s: float = 60.0
) -> Started:
    """Start a recorded process that is no longer running (killed, crashed) again with the
    plan's environment, record its new pid, and wait until it is healthy."""
    processes = load(plan)
    old = _recorded(plan, name)
    if alive(old.pid):
        raise DevnetError(f"{name} is still running (pid {old.pid}): stop it first")
    report(name)
    new: Started
    if name == "redis":  # the same port and folder: it reloads its append-only file
        server = start_redis(plan.directory / "redis", port=plan.redis_port)
        new = Started("redis", server.pid, str(server.log_path))
    elif old.service:
        process = spawn(
            name,
            [sys.executable, "-m", f"perpnet.{old.service}"],
            Path(old.log),
            env={**os.environ, **plan.process_env(name, old.service)},
        )
        new = Started(name, process.pid, str(process.log_path), old.service)
    else:
        raise DevnetError(f"{name} cannot be restarted alone (only redis and the services)")
    _save(plan, [new if p.name == name else p for p in processes])
    if new.service:
        _wait_healthy(plan, [new], report, health_timeout_s)
    return new


def _recorded(plan: Plan, name: str) -> Started:
    for process in load(plan):
        if process.name == name:
            return process
    raise DevnetError(f"no process {name!r} in {plan.record}")


def down(plan: Plan, report: Report, grace_s: float = 15.0) -> list[str]:
    """SIGTERM every recorded process (services first, then anvil and redis), then SIGKILL."""
    processes = load(plan)
    order = [p for p in reversed(processes) if p.service] + [p for p in processes if not p.service]
    for p in order:
        if alive(p.pid):
            report(f"stopping {p.name}")
            _signal_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(alive(p.pid) for p in order) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = [p.name for p in order if alive(p.pid)]
    for p in order:
        if alive(p.pid):
            _signal_group(p.pid, signal.SIGKILL)
    if plan.record.exists():
        plan.record.unlink()
    return killed


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
