"""Buffer sizes are a deployment's choice: the contracts are compiled for the longest
statement and packed proof a deployment takes (compile.Buffers), bad sizes are refused
before anything is deployed, and the defaults are exactly the committed sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import vyper  # type: ignore[import-untyped]
from typer.testing import CliRunner

from perpnet.core.crypto import keccak
from perpnet.devnet.plan import Plan
from perpnet.devnet.supervisor import DevnetError, _deploy
from perpnet.l1 import stark_bench as sb
from perpnet.l1 import stark_verifier as sv
from perpnet.l1.cli import app
from perpnet.l1.compile import ANY_PROOF_ROOM, CONTRACTS, DEFAULT_BUFFERS, Buffers, source_hash

STATEMENT_LIMIT = "PERPNET_SEQUENCER_BATCH_MAX_STATEMENT_BYTES"


def test_the_defaults_are_the_committed_sources_and_keep_their_cache_keys() -> None:
    assert DEFAULT_BUFFERS.statement == sb.MAX_PUBLIC == sb._constant("stark_lib", "MAX_PUBLIC")
    assert DEFAULT_BUFFERS.packed == sb._constant("stark_batch_verifier", "MAX_PACKED")
    assert DEFAULT_BUFFERS.packed == sb._constant("fact_registry", "MAX_PROOF")
    assert DEFAULT_BUFFERS.packed + 100 == sb._constant("rollup", "MAX_PROOF")
    # the keys artifacts were cached under before buffers were a choice
    old = keccak(vyper.__version__.encode() + b"\0" + (CONTRACTS / "rollup.vy").read_bytes())
    assert source_hash("rollup") == old.hex()
    other = Buffers.for_statement(65_536)
    assert source_hash("rollup", other) != source_hash("rollup")
    for name in (sv.VERIFIER, sv.BATCH_VERIFIER, sv.FRI):
        assert sv._sources_hash(name, other) != sv._sources_hash(name)


def test_other_sizes_rewrite_every_buffer_constant_and_nothing_else() -> None:
    big = Buffers.for_statement(409_600)
    assert big.packed == 409_600 + ANY_PROOF_ROOM  # past the default: any proof fits
    assert Buffers.for_statement(65_536).proof_room == DEFAULT_BUFFERS.proof_room
    assert Buffers.for_statement(DEFAULT_BUFFERS.statement) == DEFAULT_BUFFERS
    expected = {
        "stark_lib": "MAX_PUBLIC: constant(uint256) = 409_600",
        "stark_batch_verifier": f"MAX_PACKED: public(constant(uint256)) = {big.packed:_}",
        "fact_registry": f"MAX_PROOF: public(constant(uint256)) = {big.packed:_}",
        "rollup": f"MAX_PROOF: public(constant(uint256)) = {big.packed + 100:_}",
    }
    for name, line in expected.items():
        old = (CONTRACTS / f"{name}.vy").read_text().splitlines()
        new = big.source(name).splitlines()
        changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
        assert len(changed) == 1 and changed[0][1].startswith(line), (name, changed)


def test_a_batch_gets_the_defaults_if_they_take_it_else_sizes_rounded_up() -> None:
    assert Buffers.fitting(1_000, 100_000) == DEFAULT_BUFFERS
    assert Buffers.fitting(DEFAULT_BUFFERS.statement, DEFAULT_BUFFERS.packed) == DEFAULT_BUFFERS
    assert Buffers.fitting(237_956, 355_172) == Buffers(262_144, 360_448)
    # a packed proof alone too long: the statement keeps the default
    assert Buffers.fitting(150_000, 300_000) == Buffers(DEFAULT_BUFFERS.statement, 327_680)
    with pytest.raises(ValueError, match="max statement bytes must be in"):
        Buffers.fitting(Buffers.MAX_STATEMENT + 1, Buffers.MAX_PACKED)


@pytest.mark.parametrize(
    ("statement", "packed", "message"),
    [
        (1_000, 100_000, "max statement bytes must be in"),
        (Buffers.MAX_STATEMENT + 1, Buffers.MAX_PACKED, "max statement bytes must be in"),
        (100_000, 100_000, "max packed proof bytes must be in"),
        (100_000, Buffers.MAX_PACKED + 1, "max packed proof bytes must be in"),
    ],
)
def test_bad_sizes_are_refused(statement: int, packed: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Buffers(statement, packed)
    with pytest.raises(ValueError, match="max statement bytes must be in"):
        Buffers.for_statement(Buffers.MAX_STATEMENT + 1)


def test_deploy_command_refuses_bad_sizes_before_reaching_the_node(tmp_path: Path) -> None:
    out = tmp_path / "l1.json"
    # port 9 (discard): nothing answers there, so reaching the node would fail otherwise
    args = ["deploy", "--rpc-url", "http://127.0.0.1:9", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--max-statement-bytes", "100"])
    assert result.exit_code == 2 and "max statement bytes must be in" in result.output
    # by default the sequencer's statement limit sizes the contracts (one knob in .env)
    env = {"PERPNET_SEQUENCER_BATCH_MAX_STATEMENT_BYTES": "2048"}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2 and "got 2,048" in result.output
    assert not out.exists()


def test_devnet_refuses_a_statement_limit_no_contract_can_take(tmp_path: Path) -> None:
    plan = Plan(tmp_path, anvil_port=9, extra_env={STATEMENT_LIMIT: "2048"})
    with pytest.raises(DevnetError, match=f"{STATEMENT_LIMIT}=2048: max statement bytes"):
        _deploy(plan)
    plan = Plan(tmp_path, anvil_port=9, extra_env={STATEMENT_LIMIT: "lots"})
    with pytest.raises(DevnetError, match=f"{STATEMENT_LIMIT}=lots"):
        _deploy(plan)
    assert not plan.deployment.exists()
