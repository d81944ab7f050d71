"""Settings come from PERPNET_* variables with local defaults; bad values name the variable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest

from perpnet.runtime.config import ConfigError, Range, ServiceSettings


def test_local_defaults_differ_per_service() -> None:
    matcher = ServiceSettings.from_env("matcher", {})
    sequencer = ServiceSettings.from_env("sequencer", {})
    assert matcher.grpc_port == 50051 and sequencer.grpc_port == 50054
    assert matcher.metrics_port != sequencer.metrics_port
    assert matcher.database_url == "sqlite:///.perpnet/matcher.db"
    assert matcher.redis_url == "redis://127.0.0.1:6379/0"
    assert matcher.log_level == "INFO" and matcher.bind_host == "127.0.0.1"


def test_service_specific_variable_beats_the_generic_one() -> None:
    env = {
        "PERPNET_GRPC_PORT": "6000",
        "PERPNET_MATCHER_GRPC_PORT": "6001",
        "PERPNET_DATABASE_URL": "postgresql://db/perpnet",
        "PERPNET_LOG_LEVEL": "debug",
        "PERPNET_SHUTDOWN_GRACE_S": "2.5",
    }
    matcher = ServiceSettings.from_env("matcher", env)
    margin = ServiceSettings.from_env("margin", env)
    assert (matcher.grpc_port, margin.grpc_port) == (6001, 6000)
    assert matcher.database_url == "postgresql://db/perpnet"
    assert matcher.log_level == "DEBUG"
    assert matcher.shutdown_grace_s == 2.5


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PERPNET_MATCHER_GRPC_PORT", "fifty", "expected an integer"),
        ("PERPNET_GRPC_PORT", "70000", "must be between 0 and 65535"),
        ("PERPNET_LOG_LEVEL", "loud", "expected one of DEBUG, INFO"),
        ("PERPNET_SHUTDOWN_GRACE_S", "soon", "expected a number"),
        ("PERPNET_REDIS_URL", "  ", "must not be empty"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceSettings.from_env("matcher", {variable: value})
    assert str(info.value).startswith(f"{variable}={value!r}: ")
    assert message in str(info.value)


@dataclass(frozen=True)
class BatchSettings(ServiceSettings):
    signer_key: str  # required: no default
    batch_size: Annotated[int, Range(1, 1000)] = 64
    fast: bool = False
    snapshot_dir: Path = Path(".perpnet/snapshots")


def test_services_extend_settings_with_the_same_rules() -> None:
    env = {
        "PERPNET_SIGNER_KEY": "0xabc",
        "PERPNET_SEQUENCER_BATCH_SIZE": "128",
        "PERPNET_FAST": "yes",
        "PERPNET_SNAPSHOT_DIR": "/tmp/snaps",
    }
    settings = BatchSettings.from_env("sequencer", env)
    assert settings.batch_size == 128 and settings.fast is True
    assert settings.snapshot_dir == Path("/tmp/snaps")
    assert settings.grpc_port == 50054  # the base fields keep their per-service defaults
    with pytest.raises(ConfigError, match="PERPNET_SIGNER_KEY is required"):
        BatchSettings.from_env("sequencer", {})
    with pytest.raises(ConfigError, match="PERPNET_SEQUENCER_BATCH_SIZE='0': must be between"):
        BatchSettings.from_env("sequencer", {**env, "PERPNET_SEQUENCER_BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match="PERPNET_FAST='maybe': expected true/false"):
        BatchSettings.from_env("sequencer", {**env, "PERPNET_FAST": "maybe"})


def test_peer_addresses() -> None:
    env = {"PERPNET_MARGIN_ADDR": "margin:50052", "PERPNET_ORACLE_GRPC_PORT": "7003"}
    settings = ServiceSettings.from_env("matcher", env)
    assert settings.peer("margin") == "margin:50052"
    assert settings.peer("oracle") == "127.0.0.1:7003"
    assert settings.peer("sequencer") == "127.0.0.1:50054"
    with pytest.raises(ConfigError, match="PERPNET_NOWHERE_ADDR is required"):
        settings.peer("nowhere")
