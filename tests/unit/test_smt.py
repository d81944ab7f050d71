"""The state tree must agree with an independent reference and with an EVM verifier's view."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpnet.core import smt
from perpnet.core.crypto import keccak
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.smt import (
    EMPTY_LEAF,
    MultiProof,
    ProofFootprint,
    SparseMerkleTree,
    compute_root_from_proof,
    default_hashes,
    root_from_multiproof,
    sibling_count,
    verify_multiproof,
    verify_proof,
)

Z = EMPTY_LEAF


def leaf(n: int) -> bytes:
    return keccak(b"leaf" + n.to_bytes(32, "big"))


def reference_root(leaves: dict[int, bytes], depth: int) -> bytes:
    """Straight from the definition: recurse over subtrees, defaults for empty ones."""
    defaults = [Z]
    for _ in range(depth):
        defaults.append(keccak(defaults[-1] + defaults[-1]))
    live = {i: v for i, v in leaves.items() if v != Z}

    def node(height: int, index: int) -> bytes:
        if height == 0:
            return live.get(index, Z)
        lo, hi = index << height, (index + 1) << height
        if not any(lo <= i < hi for i in live):
            return defaults[height]
        return keccak(node(height - 1, 2 * index) + node(height - 1, 2 * index + 1))

    return node(depth, 0)


def flip(b: bytes, bit: int = 0) -> bytes:
    return bytes([b[0] ^ (1 << bit)]) + b[1:]


# --- roots ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 8, 32, 256])
def test_empty_root_is_default(depth: int) -> None:
    expected = Z
    for _ in range(depth):
        expected = keccak(expected + expected)
    tree = SparseMerkleTree(depth)
    assert tree.root() == expected == default_hashes(depth)[depth]
    assert len(tree) == 0
    assert list(tree) == []


def test_set_then_reset_returns_to_default() -> None:
    tree = SparseMerkleTree(32)
    empty = tree.root()
    for i in (0, 1, 7, 2**32 - 1, 123_456):
        tree.set(i, leaf(i))
    assert tree.root() != empty
    for i in (0, 1, 7, 2**32 - 1, 123_456):
        tree.set(i, Z)
    assert tree.root() == empty
    assert len(tree) == 0
    # Every stored node above the leaves was dropped too, not just the root.
    assert all(not level for level in tree._levels)


def test_hand_computed_depth_2() -> None:
    a, c = b"\x11" * 32, b"\x33" * 32
    tree = SparseMerkleTree(2)
    tree.set(0, a)  # index 0b00: left, left
    tree.set(2, c)  # index 0b10: left at height 0, right at height 1
    n0 = keccak(a + Z)
    n1 = keccak(c + Z)
    assert tree.root() == keccak(n0 + n1)
    tree.set(3, a)  # 0b11: right, right
    assert tree.root() == keccak(n0 + keccak(c + a))


ops = st.lists(
    # Mostly small indices so leaves get overwritten and emptied, sometimes anywhere.
    st.tuples(
        st.one_of(st.integers(0, 15), st.integers(0, 2**32 - 1)),
        st.sampled_from([0, 1, 2, 3]),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(depth=st.sampled_from([1, 2, 3, 5, 8, 32]), seq=ops)
def test_incremental_matches_scratch_and_reference(
    depth: int, seq: list[tuple[int, int, bool]]
) -> None:
    tree = SparseMerkleTree(depth)
    state: dict[int, bytes] = {}
    for raw, value, checkpoint in seq:
        index = raw % (1 << depth)
        # Value 0 empties the leaf, exercising the path that prunes back to defaults.
        v = Z if value == 0 else leaf(raw * 4 + value)
        tree.set(index, v)
        state[index] = v
        if checkpoint:
            tree.root()
    scratch = SparseMerkleTree(depth)
    for index, v in state.items():
        scratch.set(index, v)
    assert tree.root() == scratch.root() == reference_root(state, depth)
    live = sorted((i, v) for i, v in state.items() if v != Z)
    assert list(tree) == live
    assert len(tree) == len(live)
    for i, v in state.items():
        assert tree.get(i) == v
    # The stored nodes are exactly those of the scratch build: no stale non-defaults linger.
    assert tree._levels == scratch._levels


def test_one_hash_per_distinct_dirty_node(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    tree = SparseMerkleTree(32)
    for i in range(5_000):
        tree.set(i, leaf(i))
    tree.root()
    touched = {rng.randrange(5_000) for _ in range(300)}
    for i in touched:
        tree.set(i, leaf(i + 10**6))
    distinct = 0
    nodes = set(touched)
    for _ in range(32):
        nodes = {i >> 1 for i in nodes}
        distinct += len(nodes)
    calls = 0

    def counting(data: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return keccak(data)

    monkeypatch.setattr(smt, "keccak", counting)
    tree.root()
    assert calls == distinct
    calls = 0
    tree.root()
    assert calls == 0


def test_copy_is_independent() -> None:
    tree = SparseMerkleTree(16)
    for i in range(10):
        tree.set(i, leaf(i))
    before = tree.root()
    other = tree.copy()
    other.set(3, leaf(99))
    other.set(4, Z)
    assert tree.root() == before
    assert other.root() != before
    assert tree.get(4) == leaf(4) and other.get(4) == Z
    dirty_copy = other.copy()  # dirtiness is copied too
    other.set(5, leaf(5 + 1))
    dirty_copy.set(5, leaf(5 + 1))
    assert dirty_copy.root() == other.root()


def test_rejects_bad_input() -> None:
    tree = SparseMerkleTree(8)
    for bad_index in (-1, 256, True):
        with pytest.raises(CoreError) as exc:
            tree.set(bad_index, leaf(1))
        assert exc.value.code is ErrorCode.INVALID_FIELD
    for bad_leaf in (b"\x01" * 31, b"\x01" * 33, "x" * 32):
        with pytest.raises(CoreError):
            tree.set(1, bad_leaf)  # type: ignore[arg-type]
    for depth in (0, 257, -1):
        with pytest.raises(CoreError):
            SparseMerkleTree(depth)
    with pytest.raises(CoreError):
        tree.get(256)
    with pytest.raises(CoreError):
        tree.multiproof([])
    with pytest.raises(CoreError):
        tree.multiproof([1, 256])


# --- single proofs -------------------------------------------------------------------


def _populated(depth: int, n: int, seed: int) -> SparseMerkleTree:
    rng = random.Random(seed)
    tree = SparseMerkleTree(depth)
    for _ in range(n):
        i = rng.randrange(1 << depth)
        tree.set(i, leaf(i))
    return tree


@settings(max_examples=80, deadline=None)
@given(
    depth=st.sampled_from([1, 4, 32]),
    n=st.integers(0, 30),
    seed=st.integers(0, 2**32),
    probe=st.integers(0, 2**32 - 1),
)
def test_proofs_verify_and_reject_tampering(depth: int, n: int, seed: int, probe: int) -> None:
    tree = _populated(depth, n, seed)
    root = tree.root()
    indices = [*[i for i, _ in tree][:5], probe % (1 << depth)]  # present and (likely) absent
    for index in indices:
        value = tree.get(index)
        siblings = tree.proof(index)
        assert len(siblings) == depth
        assert verify_proof(root, index, value, siblings, depth)
        assert compute_root_from_proof(index, value, siblings) == root
        assert not verify_proof(root, index, flip(value), siblings, depth)
        for k in range(depth):
            tampered = list(siblings)
            tampered[k] = flip(tampered[k], k % 8)
            assert not verify_proof(root, index, value, tampered, depth)
        path = [value]
        for k in range(depth - 1):
            path.append(compute_root_from_proof(index >> k, path[-1], siblings[k : k + 1]))
        for bit in range(depth):
            other = index ^ (1 << bit)
            # Moving a leaf across height `bit` only keeps the root if both subtrees there
            # are identical, e.g. both empty.
            if path[bit] == siblings[bit]:
                continue
            assert not verify_proof(root, other, value, siblings, depth)
        assert not verify_proof(root, index, value, siblings[:-1], depth)
        assert not verify_proof(root, 1 << depth, value, siblings, depth)


def test_proof_recomputes_a_dirty_root() -> None:
    tree = _populated(32, 20, 1)
    tree.set(5, leaf(5))
    siblings = tree.proof(5)  # no explicit root() first
    assert verify_proof(tree.root(), 5, leaf(5), siblings, 32)


def test_absent_leaf_in_empty_tree() -> None:
    tree = SparseMerkleTree(32)
    siblings = tree.proof(12345)
    assert siblings == list(default_hashes(32)[:32])
    assert verify_proof(tree.root(), 12345, Z, siblings, 32)
    assert not verify_proof(tree.root(), 12345, leaf(1), siblings, 32)


# --- multiproofs ---------------------------------------------------------------------


def _naive_sibling_positions(indices: list[int], depth: int) -> list[tuple[int, int]]:
    """(height, node) of every sibling on some path that is not itself on some path."""
    out = []
    for height in range(depth):
        on_path = {i >> height for i in indices}
        out.extend((height, s) for s in sorted({p ^ 1 for p in on_path} - on_path))
    return out


@settings(max_examples=80, deadline=None)
@given(
    depth=st.sampled_from([1, 3, 8, 32]),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**32),
    picks=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12),
)
def test_multiproof_old_and_new_roots(depth: int, n: int, seed: int, picks: list[int]) -> None:
    tree = _populated(depth, n, seed)
    indices = sorted({p % (1 << depth) for p in picks} | {i for i, _ in tree if i % 3 == 0})
    old_root = tree.root()
    proof = tree.multiproof(indices)
    assert proof.indices == tuple(indices)
    positions = _naive_sibling_positions(indices, depth)
    assert proof.siblings == tuple(
        tree._levels[h].get(s, default_hashes(depth)[h]) for h, s in positions
    )
    assert len(proof.siblings) == sibling_count(indices, depth)

    old = {i: tree.get(i) for i in indices}
    assert verify_multiproof(old_root, old, proof, depth)
    assert root_from_multiproof(old, proof, depth) == old_root

    new = {i: (Z if k % 4 == 3 else leaf(i + 7 + k)) for k, i in enumerate(indices)}
    after = tree.copy()
    for i, v in new.items():
        after.set(i, v)
    # Siblings lie off every touched path, so the diff's proof is the same before and after.
    assert after.multiproof(indices) == proof
    assert root_from_multiproof(new, proof, depth) == after.root()
    assert verify_multiproof(after.root(), new, proof, depth)
    if new != old:
        assert not verify_multiproof(old_root, new, proof, depth)


def test_multiproof_rejects_tampering() -> None:
    depth = 32
    tree = _populated(depth, 200, 3)
    indices = [*[i for i, _ in tree][::20], 77, 2**32 - 1]
    root = tree.root()
    proof = tree.multiproof(indices)
    leaves = {i: tree.get(i) for i in indices}
    assert verify_multiproof(root, leaves, proof, depth)
    for k in range(len(proof.siblings)):
        sibs = list(proof.siblings)
        sibs[k] = flip(sibs[k], k % 8)
        tampered = MultiProof(depth, proof.indices, tuple(sibs))
        assert not verify_multiproof(root, leaves, tampered, depth)
    for i in indices:
        assert not verify_multiproof(root, {**leaves, i: flip(leaves[i])}, proof, depth)
    # Wrong index set, wrong depth, missing or extra siblings, malformed siblings.
    missing = dict(leaves)
    missing.pop(indices[0])
    assert not verify_multiproof(root, missing, proof, depth)
    assert not verify_multiproof(root, {**leaves, 5: Z}, proof, depth)
    assert not verify_multiproof(root, leaves, proof, 31)
    short = MultiProof(depth, proof.indices, proof.siblings[:-1])
    long = MultiProof(depth, proof.indices, (*proof.siblings, Z))
    odd = MultiProof(depth, proof.indices, (proof.siblings[0][:31], *proof.siblings[1:]))
    for bad in (short, long, odd):
        assert not verify_multiproof(root, leaves, bad, depth)
    with pytest.raises(CoreError):
        root_from_multiproof(leaves, short, depth)
    # Hand-built proofs that break the canonical invariants are refused, not crashed on.
    for bad_indices in ((*proof.indices, 2**32), tuple(reversed(proof.indices)), ()):
        bad_proof = MultiProof(depth, bad_indices, proof.siblings)
        bad_leaves = dict.fromkeys(bad_indices, Z)
        assert not verify_multiproof(root, bad_leaves, bad_proof, depth)
    assert not verify_multiproof(root, {"x": Z}, proof, depth)  # type: ignore[dict-item]
    # Moving a present leaf to its (absent) neighbour under the same siblings must fail.
    i = indices[0]
    assert leaves[i] != Z and (i ^ 1) not in leaves
    moved_leaves = {**leaves}
    moved_leaves[i ^ 1] = moved_leaves.pop(i)
    moved = MultiProof(depth, tuple(sorted(moved_leaves)), proof.siblings)
    assert not verify_multiproof(root, moved_leaves, moved, depth)


def test_multiproof_single_equals_proof() -> None:
    tree = _populated(32, 50, 9)
    i = next(iter(tree))[0]
    assert list(tree.multiproof([i]).siblings) == tree.proof(i)


def test_multiproof_all_leaves_of_full_small_tree_needs_no_siblings() -> None:
    tree = SparseMerkleTree(3)
    for i in range(8):
        tree.set(i, leaf(i))
    proof = tree.multiproof(range(8))
    assert proof.siblings == ()
    assert root_from_multiproof({i: leaf(i) for i in range(8)}, proof, 3) == tree.root()


# --- encoding ------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    depth=st.sampled_from([1, 7, 8, 9, 32, 256]),
    seed=st.integers(0, 2**32),
    k=st.integers(1, 10),
)
def test_encoding_round_trips(depth: int, seed: int, k: int) -> None:
    rng = random.Random(seed)
    tree = _populated(depth, 20, seed)
    indices = {rng.randrange(1 << depth) for _ in range(k)}
    proof = tree.multiproof(indices)
    data = proof.to_bytes()
    assert MultiProof.from_bytes(data) == proof
    assert MultiProof.from_bytes(bytearray(data)) == proof
    assert MultiProof.from_bytes(data).to_bytes() == data


@settings(max_examples=60, deadline=None)
@given(
    depth=st.sampled_from([1, 2, 5, 8, 32]),
    picks=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
    dense=st.booleans(),
)
def test_footprint_counts_the_multiproof_siblings(
    depth: int, picks: list[int], dense: bool
) -> None:
    """Added in any order, repeats included, the footprint is the multiproof's size."""
    span = min(1 << depth, 64) if dense else 1 << depth  # dense: neighbours share paths
    indices = [p % span for p in picks]
    footprint = ProofFootprint(depth)
    for n, index in enumerate(indices, 1):
        footprint.add(index)
        distinct = sorted(set(indices[:n]))
        assert footprint.leaves == len(distinct)
        assert footprint.siblings == sibling_count(distinct, depth)
    proof = _populated(depth, 10, 1).multiproof(indices)
    assert footprint.siblings == len(proof.siblings)


def test_encoding_rejects_malformed() -> None:
    tree = _populated(32, 30, 5)
    proof = tree.multiproof([1, 2, 1000, 2**31])
    data = proof.to_bytes()
    for cut in range(len(data)):
        with pytest.raises(CoreError) as exc:
            MultiProof.from_bytes(data[:cut])
        assert exc.value.code is ErrorCode.ENCODING
    for extra in (b"\x00", b"\x00" * 32, b"\x01" * 33):
        with pytest.raises(CoreError) as exc:
            MultiProof.from_bytes(data + extra)
        assert exc.value.code is ErrorCode.ENCODING

    width = 4
    header = (32).to_bytes(2, "big") + (2).to_bytes(4, "big")

    def encoded(indices: list[int], depth: int = 32, siblings: int | None = None) -> bytes:
        w = (depth + 7) // 8
        m = sibling_count(sorted(indices), depth) if siblings is None else siblings
        return (
            depth.to_bytes(2, "big")
            + len(indices).to_bytes(4, "big")
            + b"".join(i.to_bytes(w, "big") for i in indices)
            + m.to_bytes(4, "big")
            + Z * m
        )

    assert MultiProof.from_bytes(encoded([3, 9])).indices == (3, 9)
    assert encoded([3, 9])[:6] == header and width == 4
    bad_inputs = [
        encoded([9, 3]),  # not increasing
        encoded([3, 3]),  # duplicate
        encoded([]),  # empty
        encoded([3, 9], siblings=sibling_count([3, 9], 32) - 1),  # wrong sibling count
        encoded([3, 9], siblings=sibling_count([3, 9], 32) + 1),
        encoded([0], depth=0, siblings=0),  # bad depth
        encoded([0], depth=257, siblings=0),
        encoded([200], depth=7),  # index out of range within the byte width
    ]
    for bad in bad_inputs:
        with pytest.raises(CoreError) as exc:
            MultiProof.from_bytes(bad)
        assert exc.value.code is ErrorCode.ENCODING
    with pytest.raises(CoreError):
        MultiProof.from_bytes("not bytes")  # type: ignore[arg-type]
