"""The on-chain STARK verifier: compile, deploy, encode calls, verify, measure gas.

Contracts (services/perpnet/l1/contracts):

- `stark_lib.vy`: a Vyper module (imported, not deployed): BabyBear and its quartic
  extension packed in one word, the transcript's squeezes, Merkle multiproofs.
- `stark_verifier.vy`: one deployment per (AIR evaluator, parameters); parses the
  canonical proof bytes (version 2), replays the transcript, has the evaluator check
  the out-of-domain identity, checks the single-row trace and composition openings,
  and computes the DEEP composition at the queried points.
- `stark_fri.vy`: the FRI query phase (AIR-independent, shared by every verifier),
  from the committed layer 0, which must match those DEEP values.
- `stark_air_*.vy`: AIR evaluators (IAirEvaluator): `air_info()` gives the AIR's
  shape, `check(public_input, log_n, ood, challenges, alpha, z)` reverts unless the
  statement has 2^log_n rows and its constraints satisfy the composition identity at
  the out-of-domain point z (stark_lib.ood_check); `evaluate(public_input, frame,
  challenges)` returns the constraint values themselves (tests and tools). The
  verifier calls `check` with a raw call of the encoding's actual length and no return
  buffer: a typed call sends its buffer's maximum size (the statement's) and its
  answer lands past it, memory paid on every update.

Calldata: the contract takes the canonical proof bytes of `perpnet.stark.Proof.encode`
unchanged, `verify_proof(public_input, proof)`; there is no re-encoding, so the
contract verifies exactly the bytes the Python verifier verifies. `encode_call` and
`decode_call` are the ABI encoding and its inverse.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vyper  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from vyper.compiler import compile_code  # type: ignore[import-untyped]
from vyper.compiler.input_bundle import FilesystemInputBundle  # type: ignore[import-untyped]
from web3 import Web3
from web3.exceptions import ContractLogicError

from perpnet.core.batch import PublicInputs
from perpnet.core.crypto import keccak
from perpnet.core.markets import Market, MarketSet
from perpnet.core.state import StateDiff
from perpnet.l1.client import Sender
from perpnet.l1.compile import CONTRACTS, DEFAULT_BUFFERS, Artifact, Buffers, cache_dir
from perpnet.stark.batch_proof import BatchProof
from perpnet.stark.batch_statement import statement_bytes
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams

LIBRARY = "stark_lib"
VERIFIER = "stark_verifier"
FRI = "stark_fri"
EVALUATORS = ("stark_air_fibonacci", "stark_air_regperm")
SELECTOR = keccak(b"verify_proof(bytes,bytes)")[:4]
EIP170_LIMIT = 24_576
WINDOW = 9216
"""stark_lib.WINDOW: the contracts hash proof regions through calldata windows of this
size, so a call's calldata must be at least this long (encode_call pads with zeros,
which the ABI decoder ignores; real batch proofs are far longer anyway)."""


def _modules() -> list[str]:
    """Every stark_*.vy: what a stark contract may import."""
    return sorted(path.stem for path in CONTRACTS.glob("stark_*.vy"))


def _sources_hash(name: str, buffers: Buffers = DEFAULT_BUFFERS) -> str:
    """keccak of the compiler version, the contract and every stark_*.vy it may import,
    as compiled with these buffer sizes."""
    # the artifact format version (2: runtime_size counts immutables) is part of the key
    parts = [b"artifact v2", vyper.__version__.encode(), buffers.source(name).encode()]
    for module in _modules():
        parts.append(f"{module}.vy".encode() + b"\0" + buffers.source(module).encode())
    return keccak(b"\0".join(parts)).hex()


def _compile(name: str, buffers: Buffers) -> dict[str, Any]:
    """Compile from the tree, or for other buffer sizes from a copy of the sources with
    them (imports resolve in the copy)."""
    with contextlib.ExitStack() as stack:
        directory = CONTRACTS
        if buffers != DEFAULT_BUFFERS:
            directory = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="perpnet-vyper-"))
            )
            for module in _modules():
                (directory / f"{module}.vy").write_text(buffers.source(module))
        return compile_code(  # type: ignore[no-any-return]
            buffers.source(name),
            contract_path=f"{name}.vy",
            input_bundle=FilesystemInputBundle([directory]),
            output_formats=["abi", "bytecode", "bytecode_runtime", "layout"],
        )


def compile_stark(name: str, buffers: Buffers = DEFAULT_BUFFERS) -> Artifact:
    """A stark_*.vy contract's ABI and bytecode (it imports stark_lib), cached."""
    digest = _sources_hash(name, buffers)
    cached = cache_dir() / f"{name}-{digest}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return Artifact(name, data["abi"], bytes.fromhex(data["bytecode"]), digest)
    out = _compile(name, buffers)
    bytecode = bytes.fromhex(out["bytecode"].removeprefix("0x"))
    runtime = bytes.fromhex(out["bytecode_runtime"].removeprefix("0x"))
    # immutables are appended to the deployed code: they count towards EIP-170
    immutables = sum(int(v["length"]) for v in out["layout"].get("code_layout", {}).values())
    data = {
        "abi": out["abi"],
        "bytecode": bytecode.hex(),
        "runtime_size": len(runtime) + immutables,
    }
    with contextlib.suppress(OSError):  # a read-only cache (a container's) only costs time
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(cached)
    return Artifact(name, out["abi"], bytecode, digest)


def precompile() -> list[str]:
    """Compile (into the cache) every deployable stark_*.vy contract; their names."""
    names = sorted(p.stem for p in CONTRACTS.glob("stark_*.vy") if p.stem != "stark_lib")
    for name in names:
        compile_stark(name)
    return names


def runtime_size(name: str) -> int:
    """Deployed code size in bytes, immutables included (EIP-170 allows 24,576)."""
    compile_stark(name)
    data = json.loads((cache_dir() / f"{name}-{_sources_hash(name)}.json").read_text())
    return int(data["runtime_size"])


# ---------------------------------------------------------------- calldata


def encode_call(public_input: bytes, proof: bytes) -> bytes:
    """Calldata of `verify_proof(public_input, proof)`: the canonical proof bytes as they
    are, zero-padded after the ABI payload to at least WINDOW bytes."""
    data = SELECTOR + abi_encode(["bytes", "bytes"], [public_input, proof])
    return data + bytes(max(0, WINDOW - len(data)))


def decode_call(calldata: bytes) -> tuple[bytes, bytes]:
    """(public_input, proof) from calldata made by encode_call."""
    if calldata[:4] != SELECTOR:
        raise ValueError("not a verify_proof call")
    public_input, proof = abi_decode(["bytes", "bytes"], calldata[4:])
    return bytes(public_input), bytes(proof)


# ---------------------------------------------------------------- deployment


@dataclass(frozen=True, slots=True)
class StarkVerifier:
    """A deployed verifier for one AIR evaluator and one parameter set."""

    w3: Web3
    address: str
    evaluator: str
    fri: str
    params: ProofParams

    @property
    def contract(self) -> Any:
        abi = compile_stark(VERIFIER).abi
        return self.w3.eth.contract(address=Web3.to_checksum_address(self.address), abi=abi)

    def check(self, public_input: bytes, proof: bytes) -> str | None:
        """None if the contract accepts, else its revert reason (an eth_call)."""
        try:
            self.w3.eth.call({"to": self.address, "data": encode_call(public_input, proof)})
        except ContractLogicError as exc:
            return (exc.message or str(exc)).removeprefix("execution reverted: ") or "reverted"
        return None

    def accepts(self, public_input: bytes, proof: bytes) -> bool:
        return self.check(public_input, proof) is None

    def gas(self, public_input: bytes, proof: bytes) -> Gas:
        """Gas of a verify_proof transaction (eth_estimateGas; reverts raise)."""
        data = encode_call(public_input, proof)
        total = self.w3.eth.estimate_gas({"to": self.address, "data": data})
        return Gas.of(total, data)


@dataclass(frozen=True, slots=True)
class Gas:
    total: int
    """What the transaction costs (the node's estimate, including the 21,000 base)."""
    calldata: int
    """EIP-2028 calldata cost: 16 per nonzero byte, 4 per zero byte."""
    floor: int
    """EIP-7623 floor (Prague): 21,000 + 10 per token, a nonzero byte being 4 tokens."""

    @property
    def execution(self) -> int | None:
        """total - 21,000 - calldata, when the floor does not apply (else unknown)."""
        return self.total - 21_000 - self.calldata if self.total > self.floor else None

    @staticmethod
    def of(total: int, data: bytes) -> Gas:
        zeros = data.count(0)
        nonzero = len(data) - zeros
        return Gas(total, 16 * nonzero + 4 * zeros, 21_000 + 10 * (zeros + 4 * nonzero))


def deploy_fri(sender: Sender, buffers: Buffers = DEFAULT_BUFFERS) -> str:
    art = compile_stark(FRI, buffers)
    return sender.deploy(art.abi, art.bytecode)


def deploy_evaluator(sender: Sender, name: str, *args: Any) -> str:
    if name not in EVALUATORS:
        raise ValueError(f"unknown AIR evaluator {name}")
    art = compile_stark(name)
    return sender.deploy(art.abi, art.bytecode, *args)


BATCH_EVALUATOR = "stark_air_batch"
"""The batch AIR's evaluator, generated by perpnet.l1.air_codegen with its transition
parts stark_air_batch_t0.vy, _t1.vy, ... (each under EIP-170's size limit)."""


def batch_parts() -> list[str]:
    """The batch evaluator's transition part contracts, in order."""
    names = [p.stem for p in CONTRACTS.glob(f"{BATCH_EVALUATOR}_t*.vy")]
    return sorted(names, key=lambda n: int(n.rsplit("_t", 1)[1]))


def deploy_batch_evaluator(sender: Sender, buffers: Buffers = DEFAULT_BUFFERS) -> str:
    """Deploy the transition parts, then the batch evaluator that calls them."""
    parts = []
    for name in batch_parts():
        art = compile_stark(name, buffers)
        parts.append(sender.deploy(art.abi, art.bytecode))
    art = compile_stark(BATCH_EVALUATOR, buffers)
    return sender.deploy(art.abi, art.bytecode, parts)


def deploy_verifier(
    sender: Sender,
    evaluator: str,
    fri: str | None = None,
    params: ProofParams = DEFAULT_PARAMS,
    buffers: Buffers = DEFAULT_BUFFERS,
) -> StarkVerifier:
    """A verifier for `evaluator` (an IAirEvaluator address) accepting only `params`."""
    fri = fri or deploy_fri(sender, buffers)
    art = compile_stark(VERIFIER, buffers)
    address = sender.deploy(
        art.abi,
        art.bytecode,
        evaluator,
        fri,
        params.blowup,
        params.num_queries,
        params.folding_factor,
        params.grinding_bits,
        params.final_poly_size,
    )
    return StarkVerifier(sender.w3, address, evaluator, fri, params)


# ---------------------------------------------------------------- the rollup's batch verifier

BATCH_VERIFIER = "stark_batch_verifier"
"""rollup.vy's IVerifier for batch STARKs: checks the statement natively (what
batch_statement.derive_public checks and the evaluator does not), then forwards the proof
to the STARK verifier."""


def pack_batch_proof(
    public_inputs: PublicInputs, diff: StateDiff, proof: BatchProof | bytes
) -> bytes:
    """The rollup's `proof` argument for a batch in stark mode: the calldata of the STARK
    verifier's verify_proof(statement, stark proof), which stark_batch_verifier.vy checks
    and forwards unchanged (no re-encoding on chain)."""
    bp = proof if isinstance(proof, BatchProof) else BatchProof.decode(proof)
    return encode_call(statement_bytes(public_inputs, diff, bp.extras), bp.stark)


def evaluator_supports(markets: tuple[Market, ...]) -> bool:
    """Whether the committed batch evaluator was generated for this market set."""
    from perpnet.l1 import air_codegen as cg  # heavy (the batch AIR): only when deploying
    from perpnet.stark.batch_layout import market_constants

    ms = MarketSet(markets)
    text = cg.markets_module(ms, cg.probe_air(market_constants(ms)))
    return text == (CONTRACTS / f"{BATCH_EVALUATOR}_markets.vy").read_text()


def deploy_batch_verifier(
    sender: Sender, params: ProofParams = DEFAULT_PARAMS, buffers: Buffers = DEFAULT_BUFFERS
) -> tuple[str, StarkVerifier]:
    """The whole on-chain verifier of batch proofs: the batch evaluator and its parts, FRI,
    the STARK verifier for `params` and stark_batch_verifier in front of them, all built
    for `buffers`. Returns the address to give the rollup and the STARK verifier behind it."""
    evaluator = deploy_batch_evaluator(sender, buffers)
    stark = deploy_verifier(sender, evaluator, params=params, buffers=buffers)
    art = compile_stark(BATCH_VERIFIER, buffers)
    return sender.deploy(art.abi, art.bytecode, stark.address), stark
