"""Merkle commitments, batch openings and tamper rejection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpnet.core.crypto import keccak
from perpnet.stark.errors import StarkVerificationError
from perpnet.stark.merkle import (
    MerkleTree,
    commit_columns,
    leaf_bytes,
    open_columns,
    open_rows,
    verify_multiproof,
)


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "little") * 5 for i in range(n)]


def test_root_matches_reference() -> None:
    data = leaves(4)
    h = [keccak(x) for x in data]
    expect = keccak(keccak(h[0] + h[1]) + keccak(h[2] + h[3]))
    assert MerkleTree.from_bytes(b"".join(data), 20).root == expect
    assert MerkleTree([keccak(b"x")]).root == keccak(b"x")


@settings(max_examples=40)
@given(st.integers(0, 7), st.data())
def test_open_verify(log_n: int, data: st.DataObject) -> None:
    n = 1 << log_n
    raw = leaves(n)
    tree = MerkleTree.from_bytes(b"".join(raw), 20)
    idx = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n)))
    nodes = tree.open(idx)
    verify_multiproof(tree.root, log_n, idx, [raw[i] for i in idx], nodes)
    # tampered leaf, node, missing and extra nodes are all rejected
    bad = [raw[i] for i in idx]
    bad[0] = b"\xff" + bad[0][1:]
    with pytest.raises(StarkVerificationError):
        verify_multiproof(tree.root, log_n, idx, bad, nodes)
    if nodes:
        with pytest.raises(StarkVerificationError):
            verify_multiproof(
                tree.root, log_n, idx, [raw[i] for i in idx], [b"\0" * 32, *nodes[1:]]
            )
        with pytest.raises(StarkVerificationError):
            verify_multiproof(tree.root, log_n, idx, [raw[i] for i in idx], nodes[:-1])
    with pytest.raises(StarkVerificationError):
        verify_multiproof(tree.root, log_n, idx, [raw[i] for i in idx], [*nodes, b"\0" * 32])


def test_wrong_index_rejected() -> None:
    raw = leaves(16)
    tree = MerkleTree.from_bytes(b"".join(raw), 20)
    nodes = tree.open([3])
    with pytest.raises(StarkVerificationError):
        verify_multiproof(tree.root, 4, [5], [raw[3]], nodes)
    with pytest.raises(StarkVerificationError):
        verify_multiproof(tree.root, 4, [3, 3], [raw[3], raw[3]], nodes)
    with pytest.raises(StarkVerificationError):
        verify_multiproof(tree.root, 4, [16], [raw[3]], nodes)


def test_multiproof_is_compact() -> None:
    tree = MerkleTree.from_bytes(b"".join(leaves(1024)), 20)
    assert len(tree.open([0, 1])) == 9
    assert len(tree.open(list(range(1024)))) == 0


def test_column_commitment_groups_fold_cosets() -> None:
    cols = np.arange(3 * 16, dtype=np.uint64).reshape(3, 16)
    tree = commit_columns(cols, 4)
    opened = open_columns(cols, 4, [1, 2])
    assert opened.shape == (2, 4, 3)
    assert opened[0, :, 0].tolist() == [1, 5, 9, 13]
    verify_multiproof(tree.root, 2, [1, 2], leaf_bytes(opened), tree.open([1, 2]))


def test_row_commitment_has_one_row_per_leaf() -> None:
    cols = np.arange(3 * 16, dtype=np.uint64).reshape(3, 16)
    tree = commit_columns(cols, 1)
    assert tree.depth == 4
    opened = open_rows(cols, [2, 7])
    assert opened.tolist() == [[2, 18, 34], [7, 23, 39]]
    assert leaf_bytes(opened)[0] == np.array([2, 18, 34], dtype="<u4").tobytes()
    verify_multiproof(tree.root, 4, [2, 7], leaf_bytes(opened), tree.open([2, 7]))
    with pytest.raises(StarkVerificationError):
        verify_multiproof(tree.root, 4, [2, 6], leaf_bytes(opened), tree.open([2, 7]))
