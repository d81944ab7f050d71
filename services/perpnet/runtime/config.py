"""Typed service settings from PERPNET_* environment variables, with working local defaults.

Every field of a settings dataclass is read from `PERPNET_<SERVICE>_<FIELD>`,
then `PERPNET_<FIELD>`, then its default. The service-specific name wins so a
single environment (one `.env`, or `perpnet devnet`) can configure all
services at once, while a container sets only the generic names. A value that
does not parse stops the process with an error naming the variable: a typo in
a port must not turn into a silently different default.

Services extend `ServiceSettings` with their own fields (they get the same
lookup rules for free):

    @dataclass(frozen=True)
    class SequencerSettings(ServiceSettings):
        batch_size: Annotated[int, Range(1, 100_000)] = 256
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

PREFIX = "PERPNET_"

# Distinct defaults so that every service can run side by side on one machine.
GRPC_PORTS: Mapping[str, int] = {
    "matcher": 50051,
    "margin": 50052,
    "oracle": 50053,
    "sequencer": 50054,
    "prover": 50055,
    "bridge": 50056,
}
METRICS_PORTS: Mapping[str, int] = {
    "gateway": 9100,
    "matcher": 9101,
    "margin": 9102,
    "oracle": 9103,
    "sequencer": 9104,
    "prover": 9105,
    "bridge": 9106,
}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds for a numeric setting, used as `Annotated[int, Range(lo, hi)]`."""

    lo: float
    hi: float


Port = Annotated[int, Range(0, 65535)]  # 0 asks the OS for any free port
Seconds = Annotated[float, Range(0, 86_400)]


def env_name(service: str, name: str, *, generic: bool = False) -> str:
    """The variable that sets `name` for `service` (or for every service)."""
    scope = "" if generic else service.upper().replace("-", "_") + "_"
    return f"{PREFIX}{scope}{name.upper()}"


_PER_SERVICE_DEFAULTS: dict[str, Callable[[str], object]] = {
    "grpc_port": lambda service: GRPC_PORTS.get(service, 0),
    "metrics_port": lambda service: METRICS_PORTS.get(service, 0),
    "database_url": lambda service: f"sqlite:///.perpnet/{service}.db",
}


@dataclass(frozen=True, kw_only=True)  # keyword-only: subclasses may add required fields
class ServiceSettings:
    """What every service needs: where to listen, where its stores are, how to log and stop."""

    service: str
    bind_host: str = "127.0.0.1"  # 0.0.0.0 inside containers
    grpc_port: Port = 0  # default per service: GRPC_PORTS
    metrics_port: Port = 0  # default per service: METRICS_PORTS
    database_url: str = ""  # default: sqlite:///.perpnet/<service>.db
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: LogLevel = "INFO"
    shutdown_grace_s: Seconds = 10.0
    health_interval_s: Annotated[float, Range(0.01, 60)] = 1.0
    # Freeze the heap once ready (gc.freeze): full collections then skip what the service
    # holds from start-up on, so they pause it for milliseconds instead of 60-200 ms.
    gc_freeze: bool = True
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    _NOT_SETTINGS: ClassVar[frozenset[str]] = frozenset({"service", "env"})

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> Self:
        """Read every field from `env` (default: os.environ); raise ConfigError on bad values."""
        source = dict(os.environ if env is None else env)
        hints = typing.get_type_hints(cls, include_extras=True)
        values: dict[str, Any] = {"service": service, "env": source}
        for f in dataclasses.fields(cls):
            if f.name in cls._NOT_SETTINGS:
                continue
            for var in (env_name(service, f.name), env_name(service, f.name, generic=True)):
                if var in source:
                    values[f.name] = _parse(var, source[var], hints[f.name])
                    break
            else:
                if f.name in _PER_SERVICE_DEFAULTS:
                    values[f.name] = _PER_SERVICE_DEFAULTS[f.name](service)
                elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"{env_name(service, f.name, generic=True)} is required")
        return cls(**values)

    def peer(self, service: str) -> str:
        """The gRPC address (host:port) of another service: PERPNET_<SVC>_ADDR or its default."""
        var = env_name(service, "addr")
        if var in self.env:
            return str(_parse(var, self.env[var], str))
        port_var = env_name(service, "grpc_port")
        port = (
            _parse(port_var, self.env[port_var], Port)
            if port_var in self.env
            else GRPC_PORTS.get(service)
        )
        if port is None:
            raise ConfigError(f"{var} is required: {service!r} has no default port")
        return f"127.0.0.1:{port}"


def _parse(var: str, raw: str, hint: Any) -> Any:
    """Convert one variable to the field's type, or raise ConfigError naming it."""
    bounds: Range | None = None
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        bounds = next((e for e in extras if isinstance(e, Range)), None)
    text = raw.strip()
    value: Any
    try:
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            value = (
                text.upper() if all(isinstance(c, str) and c.isupper() for c in choices) else text
            )
            if value not in choices:
                raise ValueError(f"expected one of {', '.join(map(str, choices))}")
        elif hint is bool:
            value = _parse_bool(text)
        elif hint in (int, float):
            value = hint(text)
        elif hint is Path:
            value = Path(text)
        elif hint is str:
            if not text:
                raise ValueError("must not be empty")
            value = text
        else:  # pragma: no cover - a settings class declared a type we do not read
            raise TypeError(f"unsupported settings type {hint!r}")
    except ValueError as exc:
        raise ConfigError(f"{var}={raw!r}: {_reason(exc, hint)}") from None
    if bounds is not None and not bounds.lo <= value <= bounds.hi:
        raise ConfigError(f"{var}={raw!r}: must be between {bounds.lo:g} and {bounds.hi:g}")
    return value


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _reason(exc: ValueError, hint: Any) -> str:
    if hint is int:
        return "expected an integer"
    if hint is float:
        return "expected a number"
    return str(exc)
