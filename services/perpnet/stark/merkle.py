"""keccak256 Merkle trees over fixed-size leaves, with compact batch openings.

A leaf is keccak256 of its canonical bytes; a node is keccak256(left || right).
Both are what an EVM verifier computes with one KECCAK256 opcode each. Trees have a
fixed depth the verifier knows, so leaves and nodes need no domain tags.

A batch opening (multiproof) lists, bottom level first and left to right, exactly
the sibling nodes the verifier cannot compute from the opened leaves; shared
upper paths are sent once. Verification consumes exactly those nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sha3

from perpnet.stark.errors import StarkVerificationError
from perpnet.stark.field import Arr

_keccak = sha3.keccak_256


def hash_leaves(buf: bytes, leaf_size: int) -> list[bytes]:
    """keccak256 of each consecutive leaf_size-byte slice of buf."""
    if leaf_size <= 0 or len(buf) % leaf_size:
        raise ValueError("buffer is not a whole number of leaves")
    k = _keccak
    return [k(buf[i : i + leaf_size]).digest() for i in range(0, len(buf), leaf_size)]


def _parents(level: list[bytes]) -> list[bytes]:
    joined = b"".join(level)
    k = _keccak
    return [k(joined[i : i + 64]).digest() for i in range(0, len(joined), 64)]


class MerkleTree:
    """All levels of a tree over a power-of-two number of leaves."""

    __slots__ = ("levels",)

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        n = len(leaf_hashes)
        if n == 0 or n & (n - 1):
            raise ValueError("a Merkle tree needs a power-of-two number of leaves")
        self.levels: list[list[bytes]] = [leaf_hashes]
        while len(self.levels[-1]) > 1:
            self.levels.append(_parents(self.levels[-1]))

    @classmethod
    def from_bytes(cls, buf: bytes, leaf_size: int) -> MerkleTree:
        return cls(hash_leaves(buf, leaf_size))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    def open(self, indices: Sequence[int]) -> list[bytes]:
        """The multiproof for sorted, distinct leaf indices."""
        _check_indices(indices, len(self.levels[0]))
        nodes: list[bytes] = []
        known = list(indices)
        for level in self.levels[:-1]:
            present = set(known)
            for i in known:
                if i ^ 1 not in present:
                    nodes.append(level[i ^ 1])
            known = sorted({i >> 1 for i in known})
        return nodes


def _check_indices(indices: Sequence[int], num_leaves: int) -> None:
    if not indices:
        raise ValueError("open at least one leaf")
    prev = -1
    for i in indices:
        if not prev < i < num_leaves:
            raise ValueError("indices must be sorted, distinct and in range")
        prev = i


def multiproof_root(
    depth: int, indices: Sequence[int], leaf_hashes: Sequence[bytes], nodes: Sequence[bytes]
) -> bytes:
    """The root implied by an opening; raises unless it uses every node exactly."""
    if len(indices) != len(leaf_hashes):
        raise StarkVerificationError("Merkle opening: one leaf per index expected")
    try:
        _check_indices(indices, 1 << depth)
    except ValueError as exc:
        raise StarkVerificationError(f"Merkle opening: {exc}") from None
    k = _keccak
    layer = dict(zip(indices, leaf_hashes, strict=True))
    known = list(indices)
    pos = 0
    for _ in range(depth):
        parents: dict[int, bytes] = {}
        for i in known:
            parent = i >> 1
            if parent in parents:
                continue
            sib = i ^ 1
            if sib in layer:
                sib_hash = layer[sib]
            else:
                if pos >= len(nodes):
                    raise StarkVerificationError("Merkle opening: too few nodes")
                sib_hash = nodes[pos]
                pos += 1
            left, right = (layer[i], sib_hash) if i & 1 == 0 else (sib_hash, layer[i])
            parents[parent] = k(left + right).digest()
        layer = parents
        known = sorted(parents)
    if pos != len(nodes):
        raise StarkVerificationError("Merkle opening: unused nodes")
    return layer[0]


def verify_multiproof(
    root: bytes,
    depth: int,
    indices: Sequence[int],
    leaves: Sequence[bytes],
    nodes: Sequence[bytes],
    what: str = "commitment",
) -> None:
    """Check that `leaves` (raw bytes) sit at `indices` under `root`."""
    k = _keccak
    got = multiproof_root(depth, indices, [k(leaf).digest() for leaf in leaves], nodes)
    if got != root:
        raise StarkVerificationError(f"Merkle opening does not match the {what} root")


def commit_columns(cols: Arr, group: int) -> MerkleTree:
    """Commit to a (c, m) column matrix; leaf j holds rows j + k·m/group, k < group.

    FRI layers use group = folding factor: the values one fold combines share a leaf,
    so a query opens a single leaf per layer. Trace commitments use group = 1 (one row
    per leaf), so a query opens exactly the row it needs.
    """
    c, m = cols.shape
    rows = cols.reshape(c, group, m // group).transpose(2, 1, 0)
    buf = np.ascontiguousarray(rows, dtype="<u4").tobytes()
    return MerkleTree.from_bytes(buf, group * c * 4)


def open_columns(cols: Arr, group: int, indices: Sequence[int]) -> Arr:
    """The leaves at `indices` of commit_columns(cols, group), as (k, group, c)."""
    c, m = cols.shape
    idx = np.asarray(indices, dtype=np.int64)
    return np.ascontiguousarray(cols.reshape(c, group, m // group)[:, :, idx].transpose(2, 1, 0))


def open_rows(cols: Arr, indices: Sequence[int]) -> Arr:
    """Rows `indices` of a (c, m) matrix committed with group 1, as (k, c)."""
    return np.ascontiguousarray(cols[:, np.asarray(indices, dtype=np.int64)].T)


def leaf_bytes(rows: Arr) -> list[bytes]:
    """Canonical leaf bytes of opened values: one leaf per entry of the first axis."""
    buf = np.ascontiguousarray(rows, dtype="<u4").tobytes()
    size = len(buf) // rows.shape[0] if rows.shape[0] else 0
    return [buf[i : i + size] for i in range(0, len(buf), size)] if size else []
