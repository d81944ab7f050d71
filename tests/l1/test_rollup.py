"""The rollup on a real anvil, driven with real L2 state from ExchangeState and BatchBuilder."""

from __future__ import annotations

from dataclasses import replace

import pytest

from perpnet.core import margin
from perpnet.core.batch import DepositEntry, ForcedEntry
from perpnet.core.markets import USD
from perpnet.core.txs import ForcedWithdrawal
from perpnet.l1.anvil import rpc
from perpnet.l1.client import BatchTooLargeError, L1RevertError, verify_call, verify_call_size
from perpnet.testkit import trader

from .conftest import GRACE_S, RECLAIM_S, World

ALICE, BOB, CAROL = trader("alice"), trader("bob"), trader("carol")
BTC, ETH = 0, 1


def reverts(reason: str) -> pytest.RaisesContext[L1RevertError]:
    return pytest.raises(L1RevertError, match=f"^{reason}")


def test_deposit_is_credited_on_l2_then_withdrawn_and_claimed_exactly_once(world: World) -> None:
    deposit_id = world.fund_and_deposit("alice", 1_000 * USD)
    assert world.gov.deposits_since(world.deployment.block)[0].amount == 1_000 * USD
    world.apply(world.l2_deposit(deposit_id), world.desk.withdraw(ALICE, 250 * USD, 0))
    batch = world.builder.cut()
    world.post(batch)

    assert world.gov.state_root() == world.state.root()
    assert world.gov.next_batch_id() == 1
    assert world.gov.pending_deposit(deposit_id).status == 2  # consumed
    alice = world.user("alice")
    assert alice.claimable(ALICE.address) == 250 * USD
    assert alice.claim()[0] == 250 * USD
    assert alice.balance(ALICE.address) == 250 * USD
    with reverts("nothing to claim"):
        alice.claim()
    [credited] = world.gov.events("WithdrawalCredited", world.deployment.block)
    assert credited["args"]["amount"] == 250 * USD


def test_state_update_reverts_with_a_clear_reason(world: World) -> None:
    deposit_id = world.fund_and_deposit("alice", 500 * USD)
    world.apply(world.l2_deposit(deposit_id))
    batch = world.builder.cut()
    inputs = batch.public_inputs
    proof = b"proof"
    world.gov.register_fact(inputs, proof)

    def rejected(reason: str, tampered: object, proof: bytes = proof) -> None:
        with reverts(reason):
            world.gov.update_state(tampered, proof)  # type: ignore[arg-type]

    rejected("previous root does not match", replace(inputs, old_root=b"\x01" * 32))
    rejected("batch id is not the next one", replace(inputs, batch_id=1))
    entry = inputs.deposits[0]
    rejected(
        "deposit does not match its L1 record",
        replace(inputs, deposits=(replace(entry, amount=entry.amount + 1),)),
    )
    rejected(
        "deposits not consumed in order",
        replace(inputs, deposits=(DepositEntry(1, entry.owner, 0, entry.amount),)),
    )
    rejected("deposit counter mismatch", replace(inputs, deposits=()))
    rejected(
        "unknown forced request",
        replace(inputs, forced=(ForcedEntry(0, ALICE.address, 0, 1, ALICE.address, 1),)),
    )
    rejected("public inputs length mismatch", inputs.encode() + b"\x00")
    rejected("public inputs truncated", inputs.encode()[:100])
    rejected("invalid proof: fact not registered", inputs, b"another proof")
    # update_state's proof argument is the verifier's call; the rollup binds it to the inputs
    other = verify_call(replace(inputs, batch_id=7).encode(), proof)
    for bad, reason in (
        (other, "proof is for other public inputs"),
        (b"\x00" * 4 + other[4:], "proof is not a verify call"),
        (other[:67], "proof is not a verify call"),
    ):
        with reverts(reason):
            world.gov.sender.transact(world.gov.rollup.functions.update_state(inputs.encode(), bad))
    with reverts("not an operator"):
        world.user("bob").update_state(inputs, proof)
    with reverts("not an authorised verifier"):
        world.user("bob").register_fact(inputs, proof)

    world.gov.update_state(inputs, proof)
    with reverts("batch id is not the next one"):
        world.gov.update_state(inputs, proof)
    skipped = world.builder.cut()
    world.gov.register_fact(replace(skipped.public_inputs, batch_id=2), proof)
    with reverts("batch id is not the next one"):
        world.gov.update_state(replace(skipped.public_inputs, batch_id=2), proof)
    world.post(skipped)


def test_forced_request_served_by_l2_becomes_claimable(world: World) -> None:
    deposit_id = world.fund_and_deposit("bob", 300 * USD)
    world.apply(world.l2_deposit(deposit_id))
    world.post(world.builder.cut())
    bob = world.user("bob")
    request_id, _ = bob.forced_withdrawal_request(0, 500 * USD, CAROL.address)
    request = world.gov.forced_requests_since(world.deployment.block)[0]
    assert request.amount == 500 * USD and request.recipient == CAROL.address
    forced = ForcedWithdrawal(
        world.desk.tick(), request_id, request.owner, 0, request.amount, request.recipient
    )
    world.apply(forced)
    batch = world.builder.cut()
    lying = replace(batch.public_inputs.forced[0], recipient=BOB.address)
    world.gov.register_fact(replace(batch.public_inputs, forced=(lying,)), b"p")
    with reverts("forced request does not match its L1 record"):
        world.gov.update_state(replace(batch.public_inputs, forced=(lying,)), b"p")
    world.post(batch)
    assert world.gov.claimable(CAROL.address) == 300 * USD  # all that was free
    with reverts("forced request already served"):
        world.gov.freeze(request_id)
    assert world.user("carol").claim()[0] == 300 * USD


def test_unserved_forced_request_freezes_and_every_account_escapes_its_exact_value_once(
    world: World,
) -> None:
    desk = world.desk
    ids = [world.fund_and_deposit(name, 2_000 * USD) for name in ("alice", "bob")]
    world.apply(*(world.l2_deposit(i) for i in ids))
    world.apply(desk.price(BTC, 30_000 * USD), desk.price(ETH, 2_000 * USD))
    world.apply(desk.cross(BOB, ALICE, BTC, True, 3 * 10**7, 30_000 * USD))  # alice long
    world.apply(desk.cross(BOB, ALICE, ETH, False, 7 * 10**8, 2_000 * USD))  # alice short
    world.apply(desk.funding((BTC, 1_000_000), (ETH, -700_000)))  # unsettled funding
    # Off-tick marks: size * price is not a multiple of 10**resolution, so floors matter.
    world.apply(desk.price(BTC, 29_876_543_211), desk.price(ETH, 2_013_456_789))
    world.post(world.builder.cut())

    alice_id = world.state.account_id(ALICE.address, 0)
    bob_id = world.state.account_id(BOB.address, 0)
    assert alice_id is not None and bob_id is not None
    alice_account = world.state.account(alice_id)
    short = alice_account.positions[ETH]
    scale = world.state.markets.get(ETH).size_scale
    assert short.size < 0 and short.size * world.state.prices[ETH] % scale != 0  # floor != trunc
    assert all(
        p.funding_index != world.state.funding_index[m] for m, p in alice_account.positions.items()
    )
    leaf, siblings = world.state.account_proof(alice_id)
    with reverts("not frozen"):
        world.user("alice").escape(alice_id, leaf, siblings)

    alice = world.user("alice")
    request_id, _ = alice.forced_withdrawal_request(0, 100 * USD)
    with reverts("grace period not over"):
        world.user("carol").freeze(request_id)
    world.anvil.increase_time(GRACE_S + 1)
    with reverts("unknown forced request"):
        world.user("carol").freeze(request_id + 1)
    world.user("carol").freeze(request_id)  # anyone may freeze
    assert world.gov.frozen()
    with reverts("already frozen"):
        world.user("carol").freeze(request_id)
    with reverts("frozen"):
        world.gov.update_state(world.builder.cut().public_inputs, b"")

    with reverts("invalid Merkle proof"):
        alice.escape(alice_id, leaf, [siblings[0][::-1], *siblings[1:]])
    with reverts("invalid Merkle proof"):
        alice.escape(bob_id, leaf, siblings)
    paid_total = 0
    for account_id in (alice_id, bob_id, 1):  # 1: the fee pool, paid to governance
        account = world.state.account(account_id)
        expected = margin.risk(
            account, world.state.markets, world.state.prices, world.state.funding_index
        ).value
        leaf, siblings = world.state.account_proof(account_id)
        recipient = account.owner if account.owner != bytes(20) else world.deployment.governance
        before = world.gov.balance(recipient)
        paid, _ = world.user("carol").escape(account_id, leaf, siblings)
        assert paid == max(0, expected) > 0
        assert world.gov.balance(recipient) - before == paid
        paid_total += paid
        with reverts("account already escaped"):
            world.user("carol").escape(account_id, leaf, siblings)
    assert paid_total <= 4_000 * USD


def test_an_unconsumed_deposit_is_reclaimed_after_the_delay_and_only_once(world: World) -> None:
    deposit_id = world.fund_and_deposit("alice", 70 * USD)
    alice = world.user("alice")
    with reverts("deposit reclaim delay not over"):
        alice.reclaim_deposit(deposit_id)
    world.anvil.increase_time(RECLAIM_S)
    with reverts("only the depositor reclaims"):
        world.user("bob").reclaim_deposit(deposit_id)
    alice.reclaim_deposit(deposit_id)
    assert alice.balance(ALICE.address) == 70 * USD
    with reverts("deposit not pending"):
        alice.reclaim_deposit(deposit_id)
    world.apply(world.l2_deposit(deposit_id))
    batch = world.builder.cut()
    world.gov.register_fact(batch.public_inputs, b"p")
    with reverts("deposit not pending"):
        world.gov.update_state(batch.public_inputs, b"p")


def test_pause_stops_deposits_and_updates_but_not_exits_and_roles_are_enforced(
    world: World,
) -> None:
    deposit_id = world.fund_and_deposit("alice", 100 * USD)
    world.apply(world.l2_deposit(deposit_id), world.desk.withdraw(ALICE, 40 * USD, 0))
    batch = world.builder.cut()
    alice = world.user("alice")
    with reverts("only governance"):
        alice.set_paused(True)
    world.gov.set_paused(True)
    assert world.gov.paused()
    alice.faucet(10 * USD)
    with reverts("paused"):
        alice.deposit(ALICE.address, 0, 10 * USD)
    world.gov.register_fact(batch.public_inputs, b"p")
    with reverts("paused"):
        world.gov.update_state(batch.public_inputs, b"p")
    world.gov.set_paused(False)

    with reverts("only governance"):
        alice.set_operator(ALICE.address, True)
    world.gov.set_operator(ALICE.address, True)
    alice.update_state(batch.public_inputs, b"p")  # a second operator posts
    world.gov.set_operator(ALICE.address, False)
    world.gov.set_paused(True)
    assert alice.claim()[0] == 40 * USD  # claims stay open while paused
    request_id, _ = alice.forced_withdrawal_request(0, USD)  # and so do forced requests
    assert request_id == 0
    with reverts("only governance"):
        alice.set_verifier(ALICE.address)
    with reverts("verifier has no code"):  # a call to it would succeed: every proof would pass
        world.gov.set_verifier(ALICE.address)


def test_a_proof_of_the_maximum_size_travels_as_calldata(world: World) -> None:
    max_proof = world.gov.verifier.functions.MAX_PROOF().call()
    # stark_batch_verifier.MAX_PACKED: a 1,024-transaction statement and its proof
    assert max_proof == 294_912
    assert world.gov.rollup.functions.MAX_PROOF().call() == max_proof + 100  # the verify call
    batch = world.builder.cut()
    proof = bytes(range(256)) * (max_proof // 256) + b"\x01" * (max_proof % 256)
    assert verify_call_size(proof) == len(verify_call(b"", proof)) == max_proof + 100
    world.post(batch, proof)
    assert world.gov.state_root() == world.state.root()


def test_a_proof_past_the_maximum_size_is_refused_before_sending(world: World) -> None:
    """update_state would refuse it (its buffer's bound); the client says why instead,
    sends nothing, and a pipelined post sends the batches before it."""
    limit = world.gov.max_proof() - 100  # the verify call around the proof
    first, second = world.builder.cut(), world.builder.cut()
    sent = world.w3.eth.get_transaction_count(world.gov.sender.address)
    with pytest.raises(BatchTooLargeError, match=f"batch {first.batch_id} is too large"):
        world.gov.update_state(first.public_inputs, b"\x01" * (limit + 1))
    assert world.w3.eth.get_transaction_count(world.gov.sender.address) == sent
    posts = [
        (first.public_inputs.encode(), b"fine"),
        (second.public_inputs.encode(), b"\x01" * (limit + 1)),
    ]
    landed, error = world.gov.post_batches(posts)
    assert len(landed) == 1 and isinstance(error, BatchTooLargeError)
    assert f"batch {second.batch_id} is too large" in str(error)
    assert world.gov.next_batch_id() == second.batch_id


def test_a_backlog_of_batches_lands_in_few_blocks_in_order(world: World) -> None:
    """The bridge's catch-up path: fact + update for several batches sent back to back
    land together (interval mining, as on the devnet); a batch out of order stops the
    pipeline with the rollup's reason, after the ones before it landed."""
    url = world.anvil.url
    rpc(url, "evm_setAutomine", [False])
    rpc(url, "evm_setIntervalMining", [1])
    try:
        deposit_id = world.fund_and_deposit("alice", 500 * USD)
        world.apply(world.l2_deposit(deposit_id))
        batches = [world.builder.cut() for _ in range(4)]
        posts = [(b.public_inputs.encode(), b"proof-%d" % b.batch_id) for b in batches]
        landed, error = world.gov.post_batches(posts)
        assert error is None and len(landed) == 4
        assert world.gov.next_batch_id() == 4
        blocks = {int(r["blockNumber"]) for pair in landed for r in pair}
        assert len(blocks) < 8  # not one block per transaction

        later = [world.builder.cut() for _ in range(3)]
        posts = [(b.public_inputs.encode(), b"p") for b in (later[0], later[2], later[1])]
        landed, error = world.gov.post_batches(posts)
        assert len(landed) == 1 and world.gov.next_batch_id() == 5
        assert isinstance(error, L1RevertError) and error.reason.startswith(
            "batch id is not the next one"
        )
    finally:
        rpc(url, "evm_setIntervalMining", [0])
        rpc(url, "evm_setAutomine", [True])
