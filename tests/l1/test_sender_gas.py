"""How the bridge's Sender prices a transaction: one execution (eth_createAccessList) with
a margin, not anvil's binary-searching eth_estimateGas; reverts still raise before
anything is sent, with the contract's reason; a node without the method falls back."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import TxParams

from perpnet.l1.anvil import DEV_KEY
from perpnet.l1.client import L1RevertError, Sender

TRANSFER: TxParams = {"to": "0x" + "11" * 20, "value": 1}


def _sender(w3: Web3) -> Sender:
    return Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))


def test_gas_is_one_execution_plus_a_margin(w3: Web3) -> None:
    sender = _sender(w3)
    tx: TxParams = {**TRANSFER, "from": sender.address}
    assert sender._gas(tx) == 21_000 + 7_000 + 10_000


def test_a_revert_raises_with_its_reason_and_sends_nothing(w3: Web3) -> None:
    sender = _sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address, "pending")
    # a call into code that reverts: PUSH1 0 PUSH1 0 REVERT as init code
    with pytest.raises(L1RevertError):
        sender._submit({"from": sender.address, "data": "0x60006000fd"})
    assert w3.eth.get_transaction_count(sender.address, "pending") == nonce


def test_a_node_without_create_access_list_is_estimated(
    w3: Web3, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*_: Any) -> None:
        raise Web3RPCError("no", rpc_response={"error": {"code": -32601, "message": "nope"}})

    monkeypatch.setattr(w3.eth, "create_access_list", missing)
    sender = _sender(w3)
    tx: TxParams = {**TRANSFER, "from": sender.address}
    assert sender._gas(tx) == 21_000 + 4_200 + 10_000
