"""A typed client for the rollup's contracts over web3.py: what the bridge, tests and tools call.

Every transaction is gas-estimated first: on a revert the node answers with
the contract's reason, raised as `L1RevertError(reason)` before anything is sent.
A `Sender` signs with a local key (any JSON-RPC endpoint) or uses an account
the node holds unlocked (anvil's dev accounts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account as EthAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.logs import DISCARD
from web3.types import EventData, TxParams, TxReceipt

from perpnet.core.batch import PublicInputs
from perpnet.core.crypto import keccak

VERIFY_SELECTOR = keccak(b"verify(bytes32,bytes)")[:4]


def verify_call(public_inputs: bytes, proof: bytes) -> bytes:
    """update_state's `proof` argument: the calldata of the verifier's
    verify(keccak(public_inputs), proof), which the rollup forwards as is (its memory
    then grows with the proof's length, not with its maximum)."""
    return VERIFY_SELECTOR + abi_encode(["bytes32", "bytes"], [keccak(public_inputs), proof])


def verify_call_size(proof: bytes) -> int:
    """len(verify_call(_, proof)): selector, hash, offset, length, the proof padded to words."""
    return 4 + 3 * 32 + -(-len(proof) // 32) * 32


RECEIPT_TIMEOUT_S = 120.0
RECEIPT_POLL_S = 0.1
"""Every 20 ms, the bridge's receipt polling was a third of its CPU on an idle devnet."""


class L1RevertError(RuntimeError):
    """A contract call the chain refused; `reason` is the contract's revert string."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BatchTooLargeError(L1RevertError):
    """A batch whose proof (with its statement, on a STARK-verifying rollup) exceeds what
    update_state takes: refused before anything is sent, as the rollup would refuse it."""


def _reason(exc: ContractLogicError) -> str:
    return _revert_reason(exc.message or str(exc))


def _revert_reason(message: str) -> str:
    return message.removeprefix("execution reverted: ").removeprefix("execution reverted")


_MARGIN_CHECK = 30_000_000
"""Gas above which a transaction's estimate margin is capped at the block gas limit."""


class Sender:
    """One account that sends transactions: a local key if given, else the node's unlocked one."""

    def __init__(self, w3: Web3, *, key: bytes | None = None, address: str | None = None) -> None:
        if (key is None) == (address is None):
            raise ValueError("a Sender needs exactly one of key or address")
        self.w3 = w3
        self._key = key
        self._chain_id: int | None = None
        self.address = Web3.to_checksum_address(
            EthAccount.from_key(key).address if key is not None else str(address)
        )

    def _gas(self, tx: TxParams) -> int:
        """The gas to send `tx` with, run against the pending block (so it may build on
        transactions not yet mined); a revert raises L1RevertError. One execution through
        eth_createAccessList: anvil's eth_estimateGas binary-searches, running a 22M-gas
        state update some 20 times (1.2 s of anvil's CPU instead of 0.09 s). The margin
        covers refunds (at most a quarter more before them) and the 63/64 call rule."""
        w3 = self.w3
        try:
            used = int(w3.eth.create_access_list(tx, "pending")["gasUsed"])
            return used + used // 3 + 10_000
        except ContractLogicError as exc:
            raise L1RevertError(_reason(exc)) from exc
        except Web3RPCError as exc:
            error = exc.rpc_response.get("error") if isinstance(exc.rpc_response, dict) else None
            message = str(error.get("message", "")) if isinstance(error, dict) else ""
            if message.startswith("execution reverted"):
                raise L1RevertError(_revert_reason(message)) from exc
        try:  # a node without eth_createAccessList
            gas = w3.eth.estimate_gas(tx, "pending")
        except ContractLogicError as exc:
            raise L1RevertError(_reason(exc)) from exc
        return gas + gas // 5 + 10_000

    def _submit(self, tx: TxParams) -> HexBytes:
        """Price (self._gas) and send; the transaction hash. A revert raises before
        anything is sent."""
        w3 = self.w3
        tx["gas"] = self._gas(tx)
        if tx["gas"] > _MARGIN_CHECK:  # the margin must not push it past the block's limit
            tx["gas"] = min(tx["gas"], int(w3.eth.get_block("pending")["gasLimit"]))
        if self._key is None:
            return w3.eth.send_transaction(tx)
        tx["nonce"] = w3.eth.get_transaction_count(self.address, "pending")
        signed = EthAccount.sign_transaction(tx, self._key)
        return w3.eth.send_raw_transaction(signed.raw_transaction)

    def _wait(self, tx_hash: HexBytes) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=RECEIPT_POLL_S
        )
        if receipt["status"] != 1:
            raise L1RevertError(f"transaction {tx_hash.hex()} reverted on chain")
        return receipt

    def _send(self, tx: TxParams) -> TxReceipt:
        return self._wait(self._submit(tx))

    def _params(self, call: ContractFunction | ContractConstructor) -> TxParams:
        if self._chain_id is None:  # one lookup, not one per transaction
            self._chain_id = int(self.w3.eth.chain_id)
        tx: TxParams = call.build_transaction(
            {"from": self.address, "gas": 0, "chainId": self._chain_id}
        )
        del tx["gas"]
        return tx

    def transact(self, call: ContractFunction) -> TxReceipt:
        return self._send(self._params(call))

    def transact_all(
        self, calls: Sequence[ContractFunction]
    ) -> tuple[list[TxReceipt], Exception | None]:
        """Send `calls` back to back, in nonce order, without waiting for one to be mined
        before the next (each is estimated on top of the ones before it), then wait for
        all: several land in one block. Sending stops at the first refusal; the receipts
        of what was sent (a prefix of `calls`) come back with that error, if any."""
        hashes: list[HexBytes] = []
        error: Exception | None = None
        for call in calls:
            try:
                hashes.append(self._submit(self._params(call)))
            except L1RevertError as exc:
                error = exc
                break
        receipts: list[TxReceipt] = []
        for tx_hash in hashes:
            try:
                receipts.append(self._wait(tx_hash))
            except L1RevertError as exc:
                return receipts, exc
        return receipts, error

    def deploy(self, abi: list[dict[str, Any]], bytecode: bytes, *args: Any) -> str:
        """Deploy a contract; returns its checksummed address."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        address = self._send(self._params(factory.constructor(*args)))["contractAddress"]
        assert address is not None
        return str(address)


@dataclass(frozen=True, slots=True)
class PendingDeposit:
    deposit_id: int
    owner: bytes
    subaccount: int
    amount: int
    sender: str
    time: int
    status: int  # 0 unknown, 1 pending, 2 consumed, 3 reclaimed


@dataclass(frozen=True, slots=True)
class ForcedRequest:
    request_id: int
    owner: bytes
    subaccount: int
    amount: int
    recipient: bytes
    deadline: int


def _pi_bytes(public_inputs: PublicInputs | bytes) -> bytes:
    return public_inputs.encode() if isinstance(public_inputs, PublicInputs) else public_inputs


def _addr(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _checksum(address: bytes | str) -> str:
    return Web3.to_checksum_address(address if isinstance(address, str) else "0x" + address.hex())


class RollupClient:
    """The rollup, its collateral token and its verifier, seen from one sender.

    With a "facts" verifier a batch is posted as register_fact + update_state (the proof
    is opaque to L1); with a "stark" verifier as update_state alone, its proof being
    `stark_verifier.pack_batch_proof`'s bytes, checked on chain."""

    def __init__(
        self,
        w3: Web3,
        contracts: dict[str, tuple[str, list[dict[str, Any]]]],
        sender: Sender,
        *,
        verifier_kind: str = "facts",
    ) -> None:
        """`contracts` maps token, verifier and rollup to (address, abi), as deploy.py writes."""
        self.w3 = w3
        self.sender = sender
        self.verifier_kind = verifier_kind
        self._contracts = contracts
        self.token: Contract = self._bind("token")
        self.verifier: Contract = self._bind("verifier")
        self.rollup: Contract = self._bind("rollup")
        self._max_proof: int | None = None

    def _bind(self, name: str) -> Contract:
        address, abi = self._contracts[name]
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)

    def as_sender(self, sender: Sender) -> RollupClient:
        """The same contracts, acting as someone else."""
        return RollupClient(self.w3, self._contracts, sender, verifier_kind=self.verifier_kind)

    def _tx(self, call: ContractFunction) -> TxReceipt:
        return self.sender.transact(call)

    def _event(self, receipt: TxReceipt, contract: Contract, name: str) -> EventData:
        # Other contracts' logs (the token's Transfer) are not this event: skip them quietly.
        events = contract.events[name]().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise RuntimeError(f"expected one {name} event, got {len(events)}")
        event: EventData = events[0]
        return event

    # ------------------------------------------------------------------ views

    def state_root(self) -> bytes:
        return bytes(self.rollup.functions.state_root().call())

    def accounts_root(self) -> bytes:
        return bytes(self.rollup.functions.accounts_root().call())

    def next_batch_id(self) -> int:
        return int(self.rollup.functions.next_batch_id().call())

    def claimable(self, address: bytes | str) -> int:
        return int(self.rollup.functions.claimable(_checksum(address)).call())

    def balance(self, address: bytes | str) -> int:
        return int(self.token.functions.balanceOf(_checksum(address)).call())

    def frozen(self) -> bool:
        return bool(self.rollup.functions.frozen().call())

    def paused(self) -> bool:
        return bool(self.rollup.functions.paused().call())

    def pending_deposit(self, deposit_id: int) -> PendingDeposit:
        owner, subaccount, amount, sender, time, status = self.rollup.functions.deposits(
            deposit_id
        ).call()
        return PendingDeposit(deposit_id, _addr(owner), subaccount, amount, sender, time, status)

    def forced_request(self, request_id: int) -> ForcedRequest:
        owner, subaccount, amount, recipient, deadline = self.rollup.functions.forced_requests(
            request_id
        ).call()
        return ForcedRequest(
            request_id, _addr(owner), subaccount, amount, _addr(recipient), deadline
        )

    # ------------------------------------------------------------------ token

    def faucet(self, amount: int) -> TxReceipt:
        return self._tx(self.token.functions.faucet(amount))

    def approve(self, amount: int) -> TxReceipt:
        return self._tx(self.token.functions.approve(self.rollup.address, amount))

    # ------------------------------------------------------------------ rollup

    def deposit(self, owner: bytes | str, subaccount: int, amount: int) -> tuple[int, TxReceipt]:
        """Deposit (approving first when the allowance is short); returns the deposit id."""
        allowance = self.token.functions.allowance(self.sender.address, self.rollup.address).call()
        if allowance < amount:
            self.approve(2**256 - 1)
        receipt = self._tx(self.rollup.functions.deposit(_checksum(owner), subaccount, amount))
        return int(self._event(receipt, self.rollup, "Deposited")["args"]["deposit_id"]), receipt

    def reclaim_deposit(self, deposit_id: int) -> TxReceipt:
        return self._tx(self.rollup.functions.reclaim_deposit(deposit_id))

    def update_state(self, public_inputs: PublicInputs | bytes, proof: bytes) -> TxReceipt:
        data = _pi_bytes(public_inputs)
        too_large = self._too_large(data, proof)
        if too_large is not None:
            raise too_large
        return self._tx(self._update_call(data, proof))

    def max_proof(self) -> int:
        """The longest `proof` argument update_state takes (rollup.MAX_PROOF)."""
        if self._max_proof is None:
            self._max_proof = int(self.rollup.functions.MAX_PROOF().call())
        return self._max_proof

    def _too_large(self, data: bytes, proof: bytes) -> BatchTooLargeError | None:
        size = verify_call_size(proof)
        if size <= self.max_proof():
            return None
        what = "proof with its statement" if self.verifier_kind == "stark" else "proof"
        return BatchTooLargeError(
            f"batch {int.from_bytes(data[:8], 'big')} is too large for the rollup: its {what} "
            f"takes {size:,} B of update_state's at most {self.max_proof():,}; cut smaller "
            "batches (PERPNET_SEQUENCER_BATCH_MAX_TXS)"
        )

    def _fitting(self, batches: Sequence[tuple[bytes, bytes]]) -> tuple[int, Exception | None]:
        """How many of `batches`, in order, fit update_state; the error for the first
        that does not, if any."""
        for i, (data, proof) in enumerate(batches):
            too_large = self._too_large(data, proof)
            if too_large is not None:
                return i, too_large
        return len(batches), None

    def register_fact(self, public_inputs: PublicInputs | bytes, proof: bytes) -> TxReceipt:
        """Register keccak(pi_hash || keccak(proof)); only after the Python verifier accepted it."""
        self._facts_only("register_fact")
        return self._tx(self._fact_call(_pi_bytes(public_inputs), proof))

    def _facts_only(self, what: str) -> None:
        if self.verifier_kind != "facts":
            raise ValueError(
                f"{what}: the rollup's verifier checks proofs on chain ({self.verifier_kind}); "
                "post with update_state / post_updates"
            )

    def _update_call(self, data: bytes, proof: bytes) -> ContractFunction:
        return self.rollup.functions.update_state(data, verify_call(data, proof))

    def _fact_call(self, data: bytes, proof: bytes) -> ContractFunction:
        return self.verifier.functions.register(keccak(data), keccak(proof))

    def post_batches(
        self, batches: Sequence[tuple[bytes, bytes]]
    ) -> tuple[list[tuple[TxReceipt, TxReceipt]], Exception | None]:
        """Register the fact and update the state for each (public inputs, proof), in batch
        order, pipelined (Sender.transact_all): a backlog of k batches takes about one
        block, not 2k. Returns the (fact, update) receipts of the batches that landed, a
        prefix, and the error that stopped the rest, if any."""
        self._facts_only("post_batches")
        fit, too_large = self._fitting(batches)
        calls: list[ContractFunction] = []
        for data, proof in batches[:fit]:
            calls += [self._fact_call(data, proof), self._update_call(data, proof)]
        receipts, error = self.sender.transact_all(calls)
        pairs = list(zip(receipts[::2], receipts[1::2], strict=False))
        return pairs, error or too_large

    def post_updates(
        self, batches: Sequence[tuple[bytes, bytes]]
    ) -> tuple[list[TxReceipt], Exception | None]:
        """update_state for each (public inputs, proof), in batch order, pipelined like
        post_batches but registering nothing: how a rollup whose verifier checks proofs
        on chain is posted to (proof = `stark_verifier.pack_batch_proof(...)`). Returns
        the receipts of the batches that landed, a prefix, and the error that stopped the
        rest, if any."""
        fit, too_large = self._fitting(batches)
        receipts, error = self.sender.transact_all(
            [self._update_call(d, p) for d, p in batches[:fit]]
        )
        return receipts, error or too_large

    def claim(self) -> tuple[int, TxReceipt]:
        receipt = self._tx(self.rollup.functions.claim())
        return int(self._event(receipt, self.rollup, "Claimed")["args"]["amount"]), receipt

    def forced_withdrawal_request(
        self, subaccount: int, amount: int, recipient: bytes | str | None = None
    ) -> tuple[int, TxReceipt]:
        to = self.sender.address if recipient is None else _checksum(recipient)
        receipt = self._tx(self.rollup.functions.forced_withdrawal_request(subaccount, amount, to))
        event = self._event(receipt, self.rollup, "ForcedWithdrawalRequested")
        return int(event["args"]["request_id"]), receipt

    def freeze(self, request_id: int) -> TxReceipt:
        return self._tx(self.rollup.functions.freeze(request_id))

    def escape(
        self, account_id: int, leaf: bytes, siblings: Sequence[bytes]
    ) -> tuple[int, TxReceipt]:
        """Escape with the leaf and path of `ExchangeState.account_proof`; returns the payout."""
        receipt = self._tx(self.rollup.functions.escape(account_id, leaf, list(siblings)))
        return int(self._event(receipt, self.rollup, "Escaped")["args"]["amount"]), receipt

    # ------------------------------------------------------------------ governance

    def set_operator(self, operator: bytes | str, allowed: bool) -> TxReceipt:
        return self._tx(self.rollup.functions.set_operator(_checksum(operator), allowed))

    def set_paused(self, paused: bool) -> TxReceipt:
        return self._tx(self.rollup.functions.set_paused(paused))

    def set_verifier(self, verifier: bytes | str) -> TxReceipt:
        return self._tx(self.rollup.functions.set_verifier(_checksum(verifier)))

    # ------------------------------------------------------------------ events

    def events(
        self, name: str, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[EventData]:
        """The rollup's `name` events in a block range (what the bridge's watcher polls)."""
        logs = self.rollup.events[name]().get_logs(from_block=from_block, to_block=to_block)
        return list(logs)

    def deposits_since(self, from_block: int = 0) -> list[PendingDeposit]:
        return [
            self.pending_deposit(int(e["args"]["deposit_id"]))
            for e in self.events("Deposited", from_block)
        ]

    def forced_requests_since(self, from_block: int = 0) -> list[ForcedRequest]:
        return [
            self.forced_request(int(e["args"]["request_id"]))
            for e in self.events("ForcedWithdrawalRequested", from_block)
        ]
