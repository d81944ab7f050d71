"""The on-chain STARK verifier against perpnet.stark: same verdict on every proof.

Honest proofs of the example AIRs are accepted by both; a corpus of tampered proofs
(a flipped byte in every section and at a stride through the whole proof, truncations,
trailing bytes, wrong public inputs, other parameters, another AIR's proof) is
rejected by both. Uses the session anvil of tests/l1/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

from perpnet.l1 import stark_verifier as sv
from perpnet.l1.anvil import DEV_KEY
from perpnet.l1.client import Sender
from perpnet.stark import ProofParams, StarkError, prove, verify
from perpnet.stark.air import Air
from perpnet.stark.examples import FibonacciAir, RegisterPermutationAir
from perpnet.stark.proof import Proof

SMALL_PARAMS = ProofParams(
    blowup=2, num_queries=20, folding_factor=2, grinding_bits=4, final_poly_size=4
)
WIDE_FOLD_PARAMS = ProofParams(
    blowup=8, num_queries=12, folding_factor=8, grinding_bits=2, final_poly_size=8
)


@dataclass
class Verifiers:
    sender: Sender
    fri: str
    fib: sv.StarkVerifier
    regperm: sv.StarkVerifier  # width 6
    fib_evaluator: str
    regperm_evaluator: str


@pytest.fixture(scope="module")
def verifiers(w3: Web3) -> Verifiers:
    sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    fri = sv.deploy_fri(sender)
    fib_eval = sv.deploy_evaluator(sender, "stark_air_fibonacci")
    rp_eval = sv.deploy_evaluator(sender, "stark_air_regperm", 6)
    return Verifiers(
        sender,
        fri,
        sv.deploy_verifier(sender, fib_eval, fri),
        sv.deploy_verifier(sender, rp_eval, fri),
        fib_eval,
        rp_eval,
    )


def fib(n: int, params: ProofParams | None = None) -> tuple[FibonacciAir, bytes]:
    trace = FibonacciAir.trace(n)
    air = FibonacciAir(n, int(trace[1, -1]))
    return air, prove(air, trace) if params is None else prove(air, trace, params)


def regperm(n: int, width: int = 6) -> tuple[RegisterPermutationAir, bytes]:
    air, trace = RegisterPermutationAir.example(n, width)
    return air, prove(air, trace)


def python_accepts(air: Air, proof: bytes, params: ProofParams | None = None) -> bool:
    try:
        if params is None:
            verify(air, proof)
        else:
            verify(air, proof, params)
    except StarkError:
        return False
    return True


def sections(proof: bytes) -> dict[str, int]:
    """Offset of the first byte of every section of a canonical proof (proof.py)."""
    p = Proof.decode(proof)
    out: dict[str, int] = {"magic": 0, "version": 7, "params": 8, "log n": 13, "main root": 14}
    pos = 46
    out["flags"] = pos
    pos += 1
    if p.aux_root is not None:
        out["aux root"] = pos
        pos += 32
    out["composition root"] = pos
    pos += 32
    out["ood header"] = pos
    out["ood values"] = pos + 9
    pos += 9 + 4 * p.ood.size
    out["FRI count"] = pos
    pos += 1
    for i in range(len(p.fri_roots)):
        out[f"FRI root {i}"] = pos
        pos += 32
    out["final header"] = pos
    out["final values"] = pos + 9
    pos += 9 + 4 * p.final_poly.size
    out["nonce"] = pos
    pos += 8
    openings = [("main", p.main_open.values, p.main_open.nodes)]
    if p.aux_open is not None:
        openings.append(("aux", p.aux_open.values, p.aux_open.nodes))
    openings.append(("composition", p.comp_open.values, p.comp_open.nodes))
    fri_layers = [(f"FRI layer {i}", o.values, o.nodes) for i, o in enumerate(p.fri_open)]
    for name, values, nodes in openings:
        pos = _opening(out, name, values, nodes, pos)
    out["FRI opening count"] = pos
    pos += 1
    for name, values, nodes in fri_layers:
        pos = _opening(out, name, values, nodes, pos)
    assert pos == len(proof)
    out["last byte"] = len(proof) - 1
    return out


def _opening(
    out: dict[str, int], name: str, values: np.ndarray, nodes: list[bytes], pos: int
) -> int:
    head = 1 + 4 * values.ndim  # rank byte, u32 dims: (rows, columns) or (leaves, r, 4)
    out[f"{name} header"] = pos
    out[f"{name} values"] = pos + head
    out[f"{name} last value"] = pos + head + 4 * values.size - 1
    pos += head + 4 * values.size
    out[f"{name} node count"] = pos
    pos += 4
    if nodes:
        out[f"{name} nodes"] = pos
        out[f"{name} last node"] = pos + 32 * len(nodes) - 1
    return pos + 32 * len(nodes)


def flip(proof: bytes, at: int, mask: int = 0x01) -> bytes:
    b = bytearray(proof)
    b[at] ^= mask
    return bytes(b)


def tampered(proof: bytes, stride: int) -> Iterator[tuple[str, bytes]]:
    for name, at in sections(proof).items():
        yield f"flip {name}", flip(proof, at)
        yield f"flip {name} (high bit)", flip(proof, at, 0x80)
    for at in range(3, len(proof), stride):
        yield f"flip byte {at}", flip(proof, at, 0x10)
    for cut in (1, 4, 32, len(proof) // 2, len(proof) - 100):
        yield f"truncated by {cut}", proof[:-cut]
    yield "trailing byte", proof + b"\x00"
    yield "trailing word", proof + bytes(32)


def same_verdict(v: sv.StarkVerifier, air: Air, proof: bytes) -> bool:
    py = python_accepts(air, proof)
    chain = v.check(air.public_input_bytes(), proof)
    assert py == (chain is None), f"Python {'accepts' if py else 'rejects'}, contract: {chain}"
    return py


# ---------------------------------------------------------------- tests


def test_contract_sizes_fit_eip170(verifiers: Verifiers) -> None:
    for name in (sv.VERIFIER, sv.FRI, *sv.EVALUATORS):
        assert sv.runtime_size(name) <= sv.EIP170_LIMIT, name
    # runtime_size counts the immutables appended at deployment: it is the code on chain
    code = verifiers.sender.w3.eth.get_code(Web3.to_checksum_address(verifiers.fib.address))
    assert len(code) == sv.runtime_size(sv.VERIFIER)


# Gas regression bound for one verify_proof transaction of the 2^10-row Fibonacci proof
# (default parameters). Measured 5.93M with proof version 2 (6.30M with version 1, 8.22M
# before the gas work); the bound leaves ~3% headroom so that a change that makes
# verification noticeably dearer fails here. Memory bounds in stark_lib (MAX_*) count too:
# MAX_PUBLIC 65,600 -> 131,072 (512-transaction batch statements) added 0.26M (6.37M).
FIB_2_10_GAS_BOUND = 6_560_000


def test_gas_regression_fibonacci_2_10(verifiers: Verifiers) -> None:
    air, proof = fib(1024)
    gas = verifiers.fib.gas(air.public_input_bytes(), proof)
    assert gas.total <= FIB_2_10_GAS_BOUND, f"{gas.total:,} gas > {FIB_2_10_GAS_BOUND:,}"


def test_calldata_round_trip() -> None:
    air, proof = fib(64)
    for pub, pr in [(air.public_input_bytes(), proof), (b"", b""), (b"\x01" * 33, proof[:77])]:
        data = sv.encode_call(pub, pr)
        assert len(data) >= sv.WINDOW
        assert data[:4] == sv.SELECTOR
        assert sv.decode_call(data) == (pub, pr)
    with pytest.raises(ValueError):
        sv.decode_call(b"\x00" * 68)


@pytest.mark.parametrize("n", [8, 64, 1024])
def test_honest_fibonacci_accepted(verifiers: Verifiers, n: int) -> None:
    air, proof = fib(n)
    assert same_verdict(verifiers.fib, air, proof)
    assert verifiers.fib.contract.functions.verify_proof(air.public_input_bytes(), proof).call()


@pytest.mark.parametrize("n", [8, 256])
def test_honest_permutation_argument_accepted(verifiers: Verifiers, n: int) -> None:
    air, proof = regperm(n)
    assert same_verdict(verifiers.regperm, air, proof)


def test_tampered_fibonacci_rejected_by_both(verifiers: Verifiers) -> None:
    air, proof = fib(256)  # two FRI rounds: layer 0 (DEEP) and one folded layer
    assert len(Proof.decode(proof).fri_open) == 2
    count = 0
    for name, bad in tampered(proof, stride=97):
        assert not same_verdict(verifiers.fib, air, bad), name
        count += 1
    assert count > 80


def test_tampered_permutation_rejected_by_both(verifiers: Verifiers) -> None:
    air, proof = regperm(256)
    assert Proof.decode(proof).aux_root is not None
    for name, bad in tampered(proof, stride=211):
        assert not same_verdict(verifiers.regperm, air, bad), name


def test_wrong_public_inputs_rejected_by_both(verifiers: Verifiers) -> None:
    air, proof = fib(64)
    for wrong in (FibonacciAir(64, air.result + 1), FibonacciAir(128, air.result)):
        assert not same_verdict(verifiers.fib, wrong, proof)
    # the trace length is the proof header's; the evaluator holds it against the statement
    evaluator = verifiers.sender.w3.eth.contract(
        address=verifiers.fib_evaluator, abi=sv.compile_stark("stark_air_fibonacci").abi
    )
    ood = [1, 1, 2, 3, 0]
    for log_n, reason in ((7, "proof is for another trace length"), (6, "out-of-domain check")):
        with pytest.raises(ContractLogicError, match=reason):
            evaluator.functions.check(air.public_input_bytes(), log_n, ood, [], 5, 1 << 64).call()
    rp, rp_proof = regperm(64)
    pairs = rp.pairs.copy()
    pairs[1, 5] = (pairs[1, 5] + 1) % (15 * 2**27 + 1)
    seeds = rp.seeds.copy()
    seeds[0] ^= 1
    for wrong_rp in (
        RegisterPermutationAir(64, 6, rp.seeds, rp.output, pairs),
        RegisterPermutationAir(64, 6, seeds, rp.output, rp.pairs),
        RegisterPermutationAir(64, 6, rp.seeds, rp.output + 1, rp.pairs),
    ):
        assert not same_verdict(verifiers.regperm, wrong_rp, rp_proof)
    # a proof of the other AIR, and public input bytes that are not canonical
    assert not same_verdict(verifiers.regperm, rp, proof)
    assert verifiers.fib.check(air.public_input_bytes()[:-1], proof) is not None
    assert verifiers.fib.check(air.public_input_bytes()[:8] + b"\xff" * 4, proof) is not None


def test_other_parameters_rejected_and_verifiable(verifiers: Verifiers) -> None:
    for params in (SMALL_PARAMS, WIDE_FOLD_PARAMS):
        air, proof = fib(512, params)
        assert python_accepts(air, proof, params)
        assert not same_verdict(verifiers.fib, air, proof)  # default-parameter verifiers
        own = sv.deploy_verifier(verifiers.sender, verifiers.fib_evaluator, verifiers.fri, params)
        assert own.check(air.public_input_bytes(), proof) is None
        assert own.check(air.public_input_bytes(), flip(proof, len(proof) - 40)) is not None
        # and a default-parameter proof is rejected by the other verifier
        dair, dproof = fib(512)
        assert own.check(dair.public_input_bytes(), dproof) is not None


def test_gas_per_verification(verifiers: Verifiers, capsys: pytest.CaptureFixture[str]) -> None:
    """Gas of one verify_proof transaction, default parameters (printed with -s)."""
    rows = []
    for log_n in range(10, 15):
        air, proof = fib(1 << log_n)
        rows.append(
            ("fibonacci", 2, log_n, len(proof), verifiers.fib.gas(air.public_input_bytes(), proof))
        )
    rp40 = sv.deploy_verifier(
        verifiers.sender,
        sv.deploy_evaluator(verifiers.sender, "stark_air_regperm", 40),
        verifiers.fri,
    )
    for log_n in (10, 12):
        rp, proof = regperm(1 << log_n, 40)
        rows.append(
            (
                "register-permutation",
                40,
                log_n,
                len(proof),
                rp40.gas(rp.public_input_bytes(), proof),
            )
        )
    with capsys.disabled():
        print("\nAIR                   width  rows   proof B   total gas   calldata   exec")
        for name, width, log_n, size, gas in rows:
            ex = "-" if gas.execution is None else f"{gas.execution:,}"
            print(
                f"{name:<21} {width:>5}  2^{log_n:<3} {size:>8,} {gas.total:>11,} "
                f"{gas.calldata:>10,}   {ex}"
            )
    for *_, gas in rows:
        assert gas.total < 60_000_000


def test_a_verifier_needs_code_at_its_evaluator_and_fri(verifiers: Verifiers) -> None:
    """The evaluator's check is a raw call with no answer read: at an address without
    code it would succeed, so deployment refuses such addresses."""
    nobody = "0x000000000000000000000000000000000000dEaD"
    for evaluator, fri in ((nobody, verifiers.fri), (verifiers.fib_evaluator, nobody)):
        with pytest.raises(Exception, match="evaluator and FRI must be contracts"):
            sv.deploy_verifier(verifiers.sender, evaluator, fri)
