"""The proof object and its versioned, canonical binary encoding.

Version 2 layout (integers big-endian, field elements 4-byte little-endian and < p):

    magic "PNSTARK" | version u8 (2) | params (5 bytes) | log2 trace length u8
    main root 32 | flags u8 (bit 0: auxiliary trace) | [aux root 32] | composition root 32
    ood values: tensor (count, 4)
    FRI: layer count u8 (L) | roots 32 each, layer 0 (the DEEP composition) first
         | final polynomial tensor (size, 4)
    proof-of-work nonce u64
    openings: main | [aux] | composition   each: values tensor (queries, columns) | nodes
              FRI layer count u8 (L) | each FRI layer: values tensor (leaves, r, 4) | nodes
      nodes = node count u32 | nodes 32 each (the multiproof of those leaves)
    a tensor = ndim u8 | dims u32 each | elements

A query is a position of the LDE domain. Trace and composition trees have one LDE
row per leaf, so their openings hold exactly the distinct queried rows (sorted);
a FRI layer's leaf holds the r values one fold combines. (Version 1 opened r rows
per trace leaf and did not commit layer 0.)

Every length is explicit, so decoding needs no AIR; the verifier then checks each
shape against what the AIR and parameters imply. Any deviation -- wrong magic or
version, truncation, trailing bytes, an element >= p, a flag bit that is not
defined, a tensor of the wrong rank -- raises ProofFormatError naming the field and
byte offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perpnet.stark.errors import ParameterError, ProofFormatError
from perpnet.stark.field import Arr, P
from perpnet.stark.fri import FriLayerOpening
from perpnet.stark.params import ProofParams

MAGIC = b"PNSTARK"
VERSION = 2
MAX_TENSOR_ELEMENTS = 1 << 24


@dataclass(frozen=True, slots=True)
class Opening:
    values: Arr
    """(queries, columns) base elements: the queried rows, sorted by position."""
    nodes: list[bytes]


@dataclass(frozen=True, slots=True)
class Proof:
    params: ProofParams
    log_trace_length: int
    main_root: bytes
    aux_root: bytes | None
    comp_root: bytes
    ood: Arr
    """(count, 4): main at z, main at z·g, aux at z, aux at z·g, composition chunks at z."""
    fri_roots: list[bytes]
    """Roots of FRI layers 0..L-1; layer 0 is the DEEP composition."""
    final_poly: Arr
    """(size, 4) coefficients, lowest degree first."""
    pow_nonce: int
    main_open: Opening
    aux_open: Opening | None
    comp_open: Opening
    fri_open: list[FriLayerOpening]

    def encode(self) -> bytes:
        out = bytearray(MAGIC)
        out.append(VERSION)
        out += self.params.encode()
        out.append(self.log_trace_length)
        out += self.main_root
        out.append(1 if self.aux_root is not None else 0)
        if self.aux_root is not None:
            out += self.aux_root
        out += self.comp_root
        _put_tensor(out, self.ood)
        out.append(len(self.fri_roots))
        for root in self.fri_roots:
            out += root
        _put_tensor(out, self.final_poly)
        out += self.pow_nonce.to_bytes(8, "big")
        _put_opening(out, self.main_open.values, self.main_open.nodes)
        if self.aux_open is not None:
            _put_opening(out, self.aux_open.values, self.aux_open.nodes)
        _put_opening(out, self.comp_open.values, self.comp_open.nodes)
        out.append(len(self.fri_open))
        for layer in self.fri_open:  # values (leaves, r, 4)
            _put_opening(out, layer.values, layer.nodes)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Proof:
        r = _Reader(data)
        if r.take(len(MAGIC), "magic") != MAGIC:
            raise ProofFormatError("not a perpnet STARK proof (bad magic)")
        version = r.u8("version")
        if version != VERSION:
            raise ProofFormatError(f"unsupported proof version {version} (expected {VERSION})")
        raw_params = r.take(5, "parameters")
        try:
            params = ProofParams.decode(raw_params)
        except ParameterError as exc:
            raise ProofFormatError(f"invalid parameters: {exc}") from None
        log_n = r.u8("trace length")
        main_root = r.take(32, "main root")
        flags = r.u8("flags")
        if flags > 1:
            raise ProofFormatError(f"undefined flag bits {flags:#x}")
        aux_root = r.take(32, "aux root") if flags else None
        comp_root = r.take(32, "composition root")
        ood = r.tensor("ood values", 2)
        n_fri = r.u8("FRI layer count")
        fri_roots = [r.take(32, "FRI root") for _ in range(n_fri)]
        final_poly = r.tensor("final polynomial", 2)
        nonce = int.from_bytes(r.take(8, "nonce"), "big")
        main_open = r.opening("main opening", 2)
        aux_open = r.opening("aux opening", 2) if flags else None
        comp_open = r.opening("composition opening", 2)
        n_open = r.u8("FRI opening count")
        fri_open = []
        for i in range(n_open):
            o = r.opening(f"FRI layer {i} opening", 3)
            fri_open.append(FriLayerOpening(o.values, o.nodes))
        if r.pos != len(data):
            raise ProofFormatError(f"{len(data) - r.pos} trailing bytes after the proof")
        return cls(
            params,
            log_n,
            main_root,
            aux_root,
            comp_root,
            ood,
            fri_roots,
            final_poly,
            nonce,
            main_open,
            aux_open,
            comp_open,
            fri_open,
        )


def _put_tensor(out: bytearray, a: Arr) -> None:
    out.append(a.ndim)
    for d in a.shape:
        out += int(d).to_bytes(4, "big")
    out += np.ascontiguousarray(a, dtype="<u4").tobytes()


def _put_opening(out: bytearray, values: Arr, nodes: list[bytes]) -> None:
    _put_tensor(out, values)
    out += len(nodes).to_bytes(4, "big")
    out += b"".join(nodes)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProofFormatError("a proof is bytes")
        self.data = bytes(data)
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ProofFormatError(
                f"truncated proof: {what} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def tensor(self, what: str, ndim: int) -> Arr:
        start = self.pos
        got = self.u8(what)
        if got != ndim:
            raise ProofFormatError(f"{what}: expected {ndim} dimensions, got {got} at {start}")
        dims = [int.from_bytes(self.take(4, what), "big") for _ in range(ndim)]
        count = 1
        for d in dims:
            count *= d
        if count > MAX_TENSOR_ELEMENTS:
            raise ProofFormatError(f"{what}: {count} elements is too many")
        raw = self.take(4 * count, what)
        arr = np.frombuffer(raw, dtype="<u4")
        if count and int(arr.max()) >= P:
            raise ProofFormatError(f"{what}: element not reduced modulo p (offset {start})")
        return arr.astype(np.uint64).reshape(dims)

    def opening(self, what: str, ndim: int) -> Opening:
        values = self.tensor(what, ndim)
        count = int.from_bytes(self.take(4, f"{what} node count"), "big")
        if 32 * count > len(self.data) - self.pos:
            raise ProofFormatError(
                f"truncated proof: {what} claims {count} nodes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} bytes left"
            )
        raw = self.take(32 * count, f"{what} nodes")
        return Opening(values, [raw[i : i + 32] for i in range(0, len(raw), 32)])
