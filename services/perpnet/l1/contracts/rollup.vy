#pragma version ~=0.4.3
"""
@title perpnet rollup: deposits, state updates, withdrawals, forced exits, escape hatch
@notice The StarkEx Perpetual model on one contract.
        - Deposits are queued with sequential ids; L2 must consume them in order,
          and one never consumed can be reclaimed after a delay.
        - The operator posts each batch's public inputs as calldata (the layout is
          perpnet.core.batch.PublicInputs); the contract checks them against its own
          records, recomputes the new root and asks the verifier about the proof.
        - Withdrawals of a verified batch become claimable, once.
        - A forced withdrawal not served within the grace period lets anyone
          freeze the contract; then every account escapes, once, with the value of
          its leaf in the last verified state, proven by a Merkle path.
        Big-endian fields are read with extract32 on the copied public inputs; the
        trailing 32-byte diff hash guarantees every earlier read is in bounds.
"""

from ethereum.ercs import IERC20

# The verifier's one entry point, verify(bytes32 public_inputs_hash, bytes proof): it
# returns on a proof it accepts and reverts otherwise.
VERIFY_SELECTOR: constant(bytes4) = method_id("verify(bytes32,bytes)", output_type=bytes4)

# update_state's `proof`: the verifier's verify(bytes32, bytes) calldata (100 bytes of
# selector, hash, offset and length) for a proof of up to 294,912 bytes (a packed batch
# proof: a statement of up to 172,032 bytes and its STARK)
MAX_PROOF: public(constant(uint256)) = 295_012
MAX_PUBLIC_INPUTS: public(constant(uint256)) = 65_536
MAX_MARKETS: public(constant(uint256)) = 32
TREE_DEPTH: public(constant(uint256)) = 32
MAX_FORCED_PER_BLOCK: public(constant(uint256)) = 10

# Encoded sizes (perpnet.core.batch / state.globals_bytes / encoding.encode_account).
HEADER: constant(uint256) = 106  # u64 batch id | 3 x b32 roots | u16 len(globals)
GLOBALS_HEAD: constant(uint256) = 80
GLOBALS_MARKET: constant(uint256) = 42  # u16 id | u128 price | u64 time | i128 funding index
MAX_GLOBALS: constant(uint256) = GLOBALS_HEAD + GLOBALS_MARKET * MAX_MARKETS
DEPOSIT_SIZE: constant(uint256) = 48  # u64 id | addr owner | u32 subaccount | u128 amount
WITHDRAWAL_SIZE: constant(uint256) = 36  # addr recipient | u128 amount
FORCED_SIZE: constant(uint256) = 84  # u64 id | addr | u32 | u128 requested | addr | u128 served
MAX_DEPOSITS: constant(uint256) = MAX_PUBLIC_INPUTS // DEPOSIT_SIZE
MAX_WITHDRAWALS: constant(uint256) = MAX_PUBLIC_INPUTS // WITHDRAWAL_SIZE
MAX_FORCED: constant(uint256) = MAX_PUBLIC_INPUTS // FORCED_SIZE
LEAF_HEAD: constant(uint256) = 49  # addr owner | u32 subaccount | i128 collateral | u64 nonce | u8 n
LEAF_POSITION: constant(uint256) = 50  # u16 market | i128 size | i128 funding index | i128 cost
MAX_LEAF: constant(uint256) = LEAF_HEAD + LEAF_POSITION * MAX_MARKETS
MAX_U128: constant(uint256) = 2**128 - 1

PENDING: constant(uint8) = 1
CONSUMED: constant(uint8) = 2
RECLAIMED: constant(uint8) = 3

struct MarketParams:
    market_id: uint16
    step_size: uint256
    atomic_resolution: uint8

struct Market:
    step_size: uint256
    scale: uint256  # 10 ** atomic_resolution
    listed: bool

struct PendingDeposit:
    owner: address
    subaccount: uint32
    amount: uint256
    sender: address
    time: uint256
    status: uint8

struct ForcedRequest:
    owner: address
    subaccount: uint32
    amount: uint256
    recipient: address
    deadline: uint256

event Deposited:
    deposit_id: indexed(uint256)
    owner: indexed(address)
    subaccount: uint32
    amount: uint256
    sender: address

event DepositReclaimed:
    deposit_id: indexed(uint256)
    sender: indexed(address)
    amount: uint256

event StateUpdated:
    batch_id: indexed(uint256)
    old_root: bytes32
    new_root: bytes32
    accounts_root: bytes32
    public_inputs_hash: bytes32
    first_deposit_id: uint256
    deposits: uint256
    withdrawals: uint256
    forced: uint256

event WithdrawalCredited:
    batch_id: indexed(uint256)
    recipient: indexed(address)
    amount: uint256

event ForcedWithdrawalRequested:
    request_id: indexed(uint256)
    owner: indexed(address)
    subaccount: uint32
    amount: uint256
    recipient: address
    deadline: uint256

event ForcedWithdrawalServed:
    request_id: indexed(uint256)
    batch_id: indexed(uint256)
    recipient: address
    served: uint256

event Claimed:
    recipient: indexed(address)
    amount: uint256

event Frozen:
    request_id: indexed(uint256)
    caller: indexed(address)
    time: uint256

event Escaped:
    account_id: indexed(uint256)
    owner: indexed(address)
    recipient: address
    amount: uint256

event OperatorSet:
    operator: indexed(address)
    allowed: bool

event PausedSet:
    paused: bool

event VerifierSet:
    verifier: indexed(address)

event GovernanceTransferred:
    governance: indexed(address)

TOKEN: public(immutable(IERC20))
GRACE_PERIOD: public(immutable(uint256))
DEPOSIT_RECLAIM_DELAY: public(immutable(uint256))

verifier: public(address)
governance: public(address)
operators: public(HashMap[address, bool])
paused: public(bool)
frozen: public(bool)

state_root: public(bytes32)
accounts_root: public(bytes32)
next_batch_id: public(uint256)
markets: public(HashMap[uint256, Market])
prices: public(HashMap[uint256, uint256])
funding_indices: public(HashMap[uint256, int256])

deposits: public(HashMap[uint256, PendingDeposit])
next_deposit_id: public(uint256)
next_unconsumed_deposit: public(uint256)

forced_requests: public(HashMap[uint256, ForcedRequest])
next_forced_id: public(uint256)
next_unserved_forced: public(uint256)
forced_in_block: HashMap[uint256, uint256]

claimable: public(HashMap[address, uint256])
escaped: public(HashMap[uint256, bool])


@deploy
def __init__(
    token: address,
    verifier: address,
    governance: address,
    operator: address,
    grace_period: uint256,
    deposit_reclaim_delay: uint256,
    markets: DynArray[MarketParams, MAX_MARKETS],
    genesis_accounts_root: bytes32,
    genesis_orders_root: bytes32,
    genesis_globals: Bytes[MAX_GLOBALS],
):
    """@notice The genesis root is recomputed from its parts, so its prices load like a batch's."""
    TOKEN = IERC20(token)
    GRACE_PERIOD = grace_period
    DEPOSIT_RECLAIM_DELAY = deposit_reclaim_delay
    assert verifier.is_contract, "verifier has no code"  # a call to no code would succeed
    self.verifier = verifier
    self.governance = governance
    self.operators[operator] = True
    for m: MarketParams in markets:
        assert m.step_size > 0, "step size must be positive"
        assert m.atomic_resolution <= 30, "atomic resolution too large"
        self.markets[convert(m.market_id, uint256)] = Market(
            step_size=m.step_size,
            scale=10 ** convert(m.atomic_resolution, uint256),
            listed=True,
        )
    self._load_globals(concat(genesis_globals, empty(bytes32)), 0, len(genesis_globals))
    self.accounts_root = genesis_accounts_root
    self.state_root = keccak256(
        concat(genesis_accounts_root, genesis_orders_root, keccak256(genesis_globals))
    )
    log GovernanceTransferred(governance=governance)
    log OperatorSet(operator=operator, allowed=True)
    log VerifierSet(verifier=verifier)


# ------------------------------------------------------------------ decoding


@internal
@pure
def _uint(word: bytes32, size: uint256) -> uint256:
    """@notice The unsigned big-endian integer in the first `size` bytes of `word`."""
    return convert(word, uint256) >> (256 - 8 * size)


@internal
@pure
def _int(word: bytes32, size: uint256) -> int256:
    """@notice The two's-complement integer in the first `size` bytes (arithmetic shift)."""
    return convert(word, int256) >> (256 - 8 * size)


@internal
@pure
def _addr(word: bytes32) -> address:
    return convert(convert(convert(word, uint256) >> 96, uint160), address)


@internal
@pure
def _floor_div(a: int256, b: int256) -> int256:
    """@notice Python's a // b for b > 0: Vyper's // truncates toward zero."""
    q: int256 = a // b
    if a % b != 0 and a < 0:
        q -= 1
    return q


@internal
def _load_globals(data: Bytes[MAX_PUBLIC_INPUTS], start: uint256, size: uint256):
    """@notice Store each market's price and funding index: the escape hatch's marks.

    `data` holds the globals at `start` followed by at least 16 more bytes, so
    that the last field can be read as a word.
    """
    assert size >= GLOBALS_HEAD and size <= MAX_GLOBALS, "malformed globals"
    assert (size - GLOBALS_HEAD) % GLOBALS_MARKET == 0, "malformed globals"
    for i: uint256 in range((size - GLOBALS_HEAD) // GLOBALS_MARKET, bound=MAX_MARKETS):
        at: uint256 = start + GLOBALS_HEAD + i * GLOBALS_MARKET
        market: uint256 = self._uint(extract32(data, at), 2)
        assert self.markets[market].listed, "unknown market in globals"
        self.prices[market] = self._uint(extract32(data, at + 2), 16)
        self.funding_indices[market] = self._int(extract32(data, at + 26), 16)


# ------------------------------------------------------------------ deposits


@external
def deposit(owner: address, subaccount: uint32, amount: uint256) -> uint256:
    """@notice Lock `amount` of the token for L2 account (owner, subaccount); returns its id."""
    assert not self.paused, "paused"
    assert not self.frozen, "frozen"
    assert owner != empty(address), "owner cannot be the zero address"
    assert amount > 0, "deposit amount must be positive"
    assert amount <= MAX_U128, "deposit amount exceeds u128"
    deposit_id: uint256 = self.next_deposit_id
    self.next_deposit_id = deposit_id + 1
    self.deposits[deposit_id] = PendingDeposit(
        owner=owner,
        subaccount=subaccount,
        amount=amount,
        sender=msg.sender,
        time=block.timestamp,
        status=PENDING,
    )
    assert extcall TOKEN.transferFrom(msg.sender, self, amount), "token transfer failed"
    log Deposited(
        deposit_id=deposit_id, owner=owner, subaccount=subaccount, amount=amount, sender=msg.sender
    )
    return deposit_id


@external
def reclaim_deposit(deposit_id: uint256):
    """@notice Return a deposit that L2 never consumed, to its sender, after the delay."""
    record: PendingDeposit = self.deposits[deposit_id]
    assert record.status == PENDING, "deposit not pending"
    assert msg.sender == record.sender, "only the depositor reclaims"
    assert (
        self.frozen or block.timestamp >= record.time + DEPOSIT_RECLAIM_DELAY
    ), "deposit reclaim delay not over"
    self.deposits[deposit_id].status = RECLAIMED
    assert extcall TOKEN.transfer(msg.sender, record.amount), "token transfer failed"
    log DepositReclaimed(deposit_id=deposit_id, sender=msg.sender, amount=record.amount)


# ------------------------------------------------------------------ state updates


@internal
def _consume_deposits(pi: Bytes[MAX_PUBLIC_INPUTS], start: uint256, count: uint256) -> uint256:
    """@notice Each listed deposit must be the next unconsumed one, exactly as recorded."""
    expected: uint256 = self.next_unconsumed_deposit
    for i: uint256 in range(count, bound=MAX_DEPOSITS):
        at: uint256 = start + i * DEPOSIT_SIZE
        record: PendingDeposit = self.deposits[expected]
        assert self._uint(extract32(pi, at), 8) == expected, "deposits not consumed in order"
        assert record.status == PENDING, "deposit not pending"
        assert (
            self._addr(extract32(pi, at + 8)) == record.owner
            and self._uint(extract32(pi, at + 28), 4) == convert(record.subaccount, uint256)
            and self._uint(extract32(pi, at + 32), 16) == record.amount
        ), "deposit does not match its L1 record"
        self.deposits[expected].status = CONSUMED
        expected += 1
    self.next_unconsumed_deposit = expected
    return expected


@internal
def _credit_withdrawals(
    pi: Bytes[MAX_PUBLIC_INPUTS], start: uint256, count: uint256, batch_id: uint256
):
    for i: uint256 in range(count, bound=MAX_WITHDRAWALS):
        at: uint256 = start + i * WITHDRAWAL_SIZE
        recipient: address = self._addr(extract32(pi, at))
        amount: uint256 = self._uint(extract32(pi, at + 20), 16)
        self.claimable[recipient] += amount
        log WithdrawalCredited(batch_id=batch_id, recipient=recipient, amount=amount)


@internal
def _serve_forced(
    pi: Bytes[MAX_PUBLIC_INPUTS], start: uint256, count: uint256, batch_id: uint256
) -> uint256:
    """@notice Each served request must be the next unserved one, exactly as requested."""
    expected: uint256 = self.next_unserved_forced
    for i: uint256 in range(count, bound=MAX_FORCED):
        at: uint256 = start + i * FORCED_SIZE
        assert self._uint(extract32(pi, at), 8) == expected, "forced requests not served in order"
        assert expected < self.next_forced_id, "unknown forced request"
        request: ForcedRequest = self.forced_requests[expected]
        requested: uint256 = self._uint(extract32(pi, at + 32), 16)
        served: uint256 = self._uint(extract32(pi, at + 68), 16)
        assert (
            self._addr(extract32(pi, at + 8)) == request.owner
            and self._uint(extract32(pi, at + 28), 4) == convert(request.subaccount, uint256)
            and requested == request.amount
            and self._addr(extract32(pi, at + 48)) == request.recipient
        ), "forced request does not match its L1 record"
        assert served <= requested, "served more than requested"
        self.claimable[request.recipient] += served
        log ForcedWithdrawalServed(
            request_id=expected, batch_id=batch_id, recipient=request.recipient, served=served
        )
        expected += 1
    self.next_unserved_forced = expected
    return expected


@internal
def _check_room(end: uint256, size: uint256):
    # Every section is followed by at least the 32-byte diff hash.
    assert end + 32 <= size, "public inputs truncated"


@internal
def _apply(pi: Bytes[MAX_PUBLIC_INPUTS]):
    """@notice Check and apply one batch's public inputs."""
    size: uint256 = len(pi)
    self._check_room(HEADER, size)
    batch_id: uint256 = self._uint(extract32(pi, 0), 8)
    assert batch_id == self.next_batch_id, "batch id is not the next one"
    old_root: bytes32 = extract32(pi, 8)
    assert old_root == self.state_root, "previous root does not match"
    accounts_root: bytes32 = extract32(pi, 40)
    globals_size: uint256 = self._uint(extract32(pi, 104), 2)
    at: uint256 = HEADER + globals_size
    self._check_room(at + 4, size)

    first_deposit: uint256 = self.next_unconsumed_deposit
    n_deposits: uint256 = self._uint(extract32(pi, at), 4)
    self._check_room(at + 4 + n_deposits * DEPOSIT_SIZE + 4, size)
    consumed: uint256 = self._consume_deposits(pi, at + 4, n_deposits)
    at += 4 + n_deposits * DEPOSIT_SIZE

    n_withdrawals: uint256 = self._uint(extract32(pi, at), 4)
    self._check_room(at + 4 + n_withdrawals * WITHDRAWAL_SIZE + 4, size)
    self._credit_withdrawals(pi, at + 4, n_withdrawals, batch_id)
    at += 4 + n_withdrawals * WITHDRAWAL_SIZE

    n_forced: uint256 = self._uint(extract32(pi, at), 4)
    at += 4 + n_forced * FORCED_SIZE
    assert at + 32 == size, "public inputs length mismatch"
    served: uint256 = self._serve_forced(pi, at - n_forced * FORCED_SIZE, n_forced, batch_id)

    # The L2 counters are bound to the root: they must agree with what L1 handed over.
    assert self._uint(extract32(pi, HEADER + 8), 8) == consumed, "deposit counter mismatch"
    assert self._uint(extract32(pi, HEADER + 16), 8) == served, "forced request counter mismatch"
    self._load_globals(pi, HEADER, globals_size)

    globals_hash: bytes32 = keccak256(slice(pi, HEADER, globals_size))
    new_root: bytes32 = keccak256(concat(accounts_root, extract32(pi, 72), globals_hash))
    self.state_root = new_root
    self.accounts_root = accounts_root
    self.next_batch_id = batch_id + 1
    log StateUpdated(
        batch_id=batch_id,
        old_root=old_root,
        new_root=new_root,
        accounts_root=accounts_root,
        public_inputs_hash=keccak256(pi),
        first_deposit_id=first_deposit,
        deposits=n_deposits,
        withdrawals=n_withdrawals,
        forced=n_forced,
    )


@external
def update_state(public_inputs: Bytes[MAX_PUBLIC_INPUTS], proof: Bytes[MAX_PROOF]):
    """@notice Post a proven batch: its public inputs travel as calldata (data availability)."""
    assert self.operators[msg.sender], "not an operator"
    assert not self.paused, "paused"
    assert not self.frozen, "frozen"
    self._apply(public_inputs)
    # `proof` is the verifier's calldata, verify(keccak256(public_inputs), <proof>), sent
    # as is: memory is paid up to the highest byte touched, and re-encoding it (or a
    # typed call, which sends its buffer's maximum) would touch MAX_PROOF more. A
    # verifier reverts on a proof it refuses, so no return buffer is needed either.
    assert len(proof) >= 68, "proof is not a verify call"
    assert convert(extract32(proof, 0), uint256) >> 224 == convert(VERIFY_SELECTOR, uint256), (
        "proof is not a verify call"
    )
    assert extract32(proof, 4) == keccak256(public_inputs), "proof is for other public inputs"
    raw_call(self.verifier, proof, is_static_call=True)


# ------------------------------------------------------------------ withdrawals


@external
def claim() -> uint256:
    """@notice Pay out everything claimable by the caller from verified batches."""
    amount: uint256 = self.claimable[msg.sender]
    assert amount > 0, "nothing to claim"
    self.claimable[msg.sender] = 0
    assert extcall TOKEN.transfer(msg.sender, amount), "token transfer failed"
    log Claimed(recipient=msg.sender, amount=amount)
    return amount


@external
def forced_withdrawal_request(subaccount: uint32, amount: uint256, recipient: address) -> uint256:
    """@notice Ask, on L1, for a withdrawal the operator must serve before the deadline."""
    assert not self.frozen, "frozen"
    assert amount > 0, "forced amount must be positive"
    assert amount <= MAX_U128, "forced amount exceeds u128"
    assert recipient != empty(address), "recipient cannot be the zero address"
    assert self.forced_in_block[block.number] < MAX_FORCED_PER_BLOCK, "too many forced requests"
    self.forced_in_block[block.number] += 1
    request_id: uint256 = self.next_forced_id
    self.next_forced_id = request_id + 1
    deadline: uint256 = block.timestamp + GRACE_PERIOD
    self.forced_requests[request_id] = ForcedRequest(
        owner=msg.sender, subaccount=subaccount, amount=amount, recipient=recipient, deadline=deadline
    )
    log ForcedWithdrawalRequested(
        request_id=request_id,
        owner=msg.sender,
        subaccount=subaccount,
        amount=amount,
        recipient=recipient,
        deadline=deadline,
    )
    return request_id


@external
def freeze(request_id: uint256):
    """@notice Anyone may freeze once a forced request has outlived its deadline unserved."""
    assert not self.frozen, "already frozen"
    assert request_id < self.next_forced_id, "unknown forced request"
    assert request_id >= self.next_unserved_forced, "forced request already served"
    assert block.timestamp > self.forced_requests[request_id].deadline, "grace period not over"
    self.frozen = True
    log Frozen(request_id=request_id, caller=msg.sender, time=block.timestamp)


# ------------------------------------------------------------------ escape hatch


@internal
@view
def _leaf_value(leaf: Bytes[MAX_LEAF]) -> int256:
    """@notice perpnet.core.margin.risk(...).value at the last verified marks and indices."""
    size: uint256 = len(leaf)
    assert size >= LEAF_HEAD, "malformed account leaf"
    padded: Bytes[MAX_LEAF + 32] = concat(leaf, empty(bytes32))
    n: uint256 = self._uint(extract32(padded, 48), 1)
    assert size == LEAF_HEAD + n * LEAF_POSITION, "malformed account leaf"
    value: int256 = self._int(extract32(padded, 24), 16)
    for i: uint256 in range(n, bound=MAX_MARKETS):
        at: uint256 = LEAF_HEAD + i * LEAF_POSITION
        market_id: uint256 = self._uint(extract32(padded, at), 2)
        market: Market = self.markets[market_id]
        assert market.listed, "unknown market in account leaf"
        position: int256 = self._int(extract32(padded, at + 2), 16)
        index: int256 = self._int(extract32(padded, at + 18), 16)
        lots: int256 = self._floor_div(position, convert(market.step_size, int256))
        value -= lots * (self.funding_indices[market_id] - index)
        value += self._floor_div(
            position * convert(self.prices[market_id], int256), convert(market.scale, int256)
        )
    return value


@internal
@view
def _merkle_root(index: uint256, leaf_hash: bytes32, siblings: bytes32[TREE_DEPTH]) -> bytes32:
    """@notice perpnet.core.smt: bit h of the index (LSB first) puts the node on the right."""
    node: bytes32 = leaf_hash
    for height: uint256 in range(TREE_DEPTH):
        if (index >> height) & 1 == 1:
            node = keccak256(concat(siblings[height], node))
        else:
            node = keccak256(concat(node, siblings[height]))
    return node


@external
def escape(account_id: uint256, leaf: Bytes[MAX_LEAF], siblings: bytes32[TREE_DEPTH]) -> uint256:
    """@notice Once frozen, pay an account's value in the last verified state, once.

    Anyone may call it; the value goes to the leaf's owner (protocol accounts,
    owned by the zero address, pay governance). Never below zero.
    """
    assert self.frozen, "not frozen"
    assert account_id < 2**TREE_DEPTH, "account id out of range"
    assert not self.escaped[account_id], "account already escaped"
    assert (
        self._merkle_root(account_id, keccak256(leaf), siblings) == self.accounts_root
    ), "invalid Merkle proof"
    value: int256 = self._leaf_value(leaf)
    amount: uint256 = 0
    if value > 0:
        amount = convert(value, uint256)
    self.escaped[account_id] = True
    owner: address = self._addr(extract32(concat(leaf, empty(bytes32)), 0))
    recipient: address = owner
    if owner == empty(address):
        recipient = self.governance
    if amount > 0:
        assert extcall TOKEN.transfer(recipient, amount), "token transfer failed"
    log Escaped(account_id=account_id, owner=owner, recipient=recipient, amount=amount)
    return amount


# ------------------------------------------------------------------ governance


@internal
@view
def _only_governance():
    assert msg.sender == self.governance, "only governance"


@external
def set_operator(operator: address, allowed: bool):
    self._only_governance()
    self.operators[operator] = allowed
    log OperatorSet(operator=operator, allowed=allowed)


@external
def set_paused(paused: bool):
    """@notice Pause stops deposits and state updates; claims, forced exits and escapes stay open."""
    self._only_governance()
    self.paused = paused
    log PausedSet(paused=paused)


@external
def set_verifier(verifier: address):
    self._only_governance()
    assert verifier.is_contract, "verifier has no code"  # a call to no code would succeed
    self.verifier = verifier
    log VerifierSet(verifier=verifier)


@external
def transfer_governance(governance: address):
    self._only_governance()
    assert governance != empty(address), "governance cannot be the zero address"
    self.governance = governance
    log GovernanceTransferred(governance=governance)
