"""Deployment is idempotent and self-describing; anvil is found or named; the bench runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web3 import Web3

from perpnet.l1 import anvil as anvil_module
from perpnet.l1.anvil import DEV_KEY, Anvil, AnvilNotFoundError
from perpnet.l1.client import Sender
from perpnet.l1.deploy import Deployment, deploy


def test_deploy_writes_addresses_and_abis_and_reuses_live_contracts(
    w3: Web3, tmp_path: Path
) -> None:
    sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    path = tmp_path / "l1.json"
    first = deploy(w3, sender, path=path)  # the default: proofs checked on chain
    data = json.loads(path.read_text())
    assert set(data["addresses"]) == {"token", "verifier", "stark_verifier", "rollup"}
    assert first.verifier_kind == "stark"
    assert any(item.get("name") == "update_state" for item in data["abis"]["rollup"])
    again = deploy(w3, sender, path=path)
    assert again.addresses == first.addresses == Deployment.load(path).addresses
    client = again.client(w3, sender)
    assert client.state_root().hex() == first.genesis_root
    forced = deploy(w3, sender, path=path, force=True)
    assert forced.addresses["rollup"] != first.addresses["rollup"]


def test_deploy_redeploys_when_the_file_names_contracts_that_are_not_there(
    w3: Web3, tmp_path: Path
) -> None:
    sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    path = tmp_path / "l1.json"
    stale = deploy(w3, sender, path=path, verifier="facts")
    empty = "0x" + "11" * 20
    Deployment(**{**stale.__dict__, "addresses": dict.fromkeys(stale.addresses, empty)}).write(path)
    fresh = deploy(w3, sender, path=path, verifier="facts")
    assert fresh.addresses["rollup"] != empty and w3.eth.get_code(fresh.addresses["rollup"])


def test_missing_anvil_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PERPNET_ANVIL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(anvil_module, "REPO", tmp_path)
    with pytest.raises(AnvilNotFoundError, match=r"npm install --prefix \.tools @foundry-rs/anvil"):
        Anvil()


def test_bench_reports_gas_for_every_operation() -> None:
    from perpnet.l1.bench import run

    result = run(batch_sizes=(1, 4), proof_bytes=2_000, stark_sizes=(64,))
    json.dumps(result)
    stark = result["stark"]
    assert isinstance(stark, dict)
    [row] = stark["state_update"]
    assert row["fits"] is True and row["update_state_gas"] > row["calldata_gas"] > 0, row
    assert all(share > 0 for share in row["execution_gas"].values()), row
    updates = result["state_update"]
    assert isinstance(updates, list) and len(updates) == 4
    for name in ("deposit", "claim", "forced_request", "freeze", "escape"):
        gas = result[name]
        assert isinstance(gas, int) and 21_000 < gas < 1_000_000, (name, gas)
