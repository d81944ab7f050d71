#pragma version ~=0.4.3
"""
@title Fact registry: the rollup's verifier until the on-chain STARK verifier lands
@notice StarkEx's fact-registry model. An authorised off-chain verifier checks a
        batch's proof with perpnet's Python STARK verifier and registers the fact
        keccak256(public_inputs_hash || keccak256(proof)); `verify` answers whether
        that fact is registered. Trust assumption, stated plainly: a registrar can
        make any state update pass; the proof is not checked on chain.
"""

# A proof travels as calldata; as rollup.MAX_PROOF (a STARK proof with its statement).
MAX_PROOF: public(constant(uint256)) = 294_912

event FactRegistered:
    fact: indexed(bytes32)
    public_inputs_hash: bytes32
    proof_hash: bytes32
    registrar: indexed(address)

event RegistrarSet:
    registrar: indexed(address)
    allowed: bool

event GovernanceTransferred:
    governance: indexed(address)

governance: public(address)
registrars: public(HashMap[address, bool])
is_valid: public(HashMap[bytes32, bool])


@deploy
def __init__(governance: address, registrar: address):
    self.governance = governance
    self.registrars[registrar] = True
    log GovernanceTransferred(governance=governance)
    log RegistrarSet(registrar=registrar, allowed=True)


@external
@pure
def fact_of(public_inputs_hash: bytes32, proof_hash: bytes32) -> bytes32:
    return keccak256(concat(public_inputs_hash, proof_hash))


@external
def register(public_inputs_hash: bytes32, proof_hash: bytes32):
    """@notice Record that the proof with `proof_hash` verified the batch `public_inputs_hash`."""
    assert self.registrars[msg.sender], "not an authorised verifier"
    fact: bytes32 = keccak256(concat(public_inputs_hash, proof_hash))
    self.is_valid[fact] = True
    log FactRegistered(
        fact=fact,
        public_inputs_hash=public_inputs_hash,
        proof_hash=proof_hash,
        registrar=msg.sender,
    )


@external
@view
def verify(public_inputs_hash: bytes32, proof: Bytes[MAX_PROOF]) -> bool:
    """True if the fact is registered; reverts otherwise (the rollup's verifier interface)."""
    assert self.is_valid[keccak256(concat(public_inputs_hash, keccak256(proof)))], (
        "invalid proof: fact not registered"
    )
    return True


@external
def set_registrar(registrar: address, allowed: bool):
    assert msg.sender == self.governance, "only governance"
    self.registrars[registrar] = allowed
    log RegistrarSet(registrar=registrar, allowed=allowed)


@external
def transfer_governance(governance: address):
    assert msg.sender == self.governance, "only governance"
    assert governance != empty(address), "governance cannot be the zero address"
    self.governance = governance
    log GovernanceTransferred(governance=governance)
