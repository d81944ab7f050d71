"""Example AIRs: what the framework proves, and how a batch AIR is meant to be written.

- FibonacciAir: two columns, linear transitions, boundary constraints only.
- RegisterPermutationAir: ~40 columns of degree-2 register updates plus a
  grand-product argument over the extension field showing that the (key, value)
  column pair is a permutation of a public list. The batch AIR binds its trace to
  the public state diff the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perpnet.core.crypto import keccak
from perpnet.stark import field as ff
from perpnet.stark.air import FE, Air, Boundary, Frame
from perpnet.stark.field import P64, Arr, P


class FibonacciAir(Air):
    """a' = b, b' = a + b from (1, 1); public: the value of b in the last row."""

    name = b"perpnet.example.fibonacci"
    width = 2
    transition_degree = 1

    def __init__(self, trace_length: int, result: int) -> None:
        self.trace_length = trace_length
        self.result = result % P

    def public_input_bytes(self) -> bytes:
        return self.trace_length.to_bytes(8, "big") + self.result.to_bytes(4, "little")

    def transition(self, frame: Frame) -> list[FE]:
        a, b = frame.cur
        a2, b2 = frame.nxt
        return [a2 - b, b2 - (a + b)]

    def boundaries(self, challenges: Sequence[FE]) -> list[Boundary]:
        return [
            Boundary(0, 0, 1),
            Boundary(1, 0, 1),
            Boundary(1, self.trace_length - 1, self.result),
        ]

    @staticmethod
    def trace(trace_length: int) -> Arr:
        a, b = 1, 1
        out = np.zeros((2, trace_length), dtype=np.uint64)
        for i in range(trace_length):
            out[0, i], out[1, i] = a, b
            a, b = b, (a + b) % P
        return out


def _pseudo_random(seed: bytes, count: int) -> Arr:
    out = bytearray()
    i = 0
    while len(out) < 8 * count:
        out += keccak(seed + i.to_bytes(8, "big"))
        i += 1
    raw = np.frombuffer(bytes(out[: 8 * count]), dtype="<u8")
    return raw % P64


class RegisterPermutationAir(Air):
    """Columns: key, value, then m = width-2 registers.

    Transitions: s_i' = s_i·s_(i+1) + s_(i+2) + key (indices mod m), degree 2.
    Boundaries: registers start at public seeds; s_0 ends at a public output.
    Permutation: the (key, value) pairs of rows 0..n-2 are a permutation of the
    public list, via the auxiliary column Z with Z_0 = 1 and
    Z_(i+1) = Z_i·(γ - key_i - δ·value_i), and Z_(n-1) = Π_j (γ - K_j - δ·V_j)
    computed by the verifier from the list (γ, δ extension challenges).
    """

    name = b"perpnet.example.register-permutation"
    transition_degree = 2
    aux_width = 1
    num_aux_challenges = 2

    def __init__(self, trace_length: int, width: int, seeds: Arr, output: int, pairs: Arr) -> None:
        if width < 5:
            raise ValueError("width must be at least 5 (key, value, 3 registers)")
        self.trace_length = trace_length
        self.width = width
        self.seeds = np.asarray(seeds, dtype=np.uint64) % P64
        self.output = output % P
        self.pairs = np.asarray(pairs, dtype=np.uint64) % P64
        if self.seeds.shape != (width - 2,) or self.pairs.shape != (2, trace_length - 1):
            raise ValueError("seeds need width-2 entries and pairs (2, n-1)")

    def public_input_bytes(self) -> bytes:
        return (
            ff.felts_to_bytes(self.seeds)
            + self.output.to_bytes(4, "little")
            + ff.felts_to_bytes(self.pairs)
        )

    def transition(self, frame: Frame) -> list[FE]:
        key, value, *regs = frame.cur
        nxt_regs = frame.nxt[2:]
        m = len(regs)
        out = [
            nxt_regs[i] - (regs[i] * regs[(i + 1) % m] + regs[(i + 2) % m] + key) for i in range(m)
        ]
        gamma, delta = frame.challenges
        z, z_next = frame.aux_cur[0], frame.aux_nxt[0]
        out.append(z_next - z * (gamma - key - delta * value))
        return out

    def boundaries(self, challenges: Sequence[FE]) -> list[Boundary]:
        n = self.trace_length
        out = [Boundary(2 + i, 0, int(s)) for i, s in enumerate(self.seeds)]
        out.append(Boundary(2, n - 1, self.output))
        out.append(Boundary(0, 0, ff.ext(1), aux=True))
        if challenges:
            gamma, delta = challenges
            terms = (
                FE.ext(np.broadcast_to(gamma.v, (4, n - 1)).copy())
                - FE.base(self.pairs[0])
                - delta * FE.base(self.pairs[1])
            )
            out.append(Boundary(0, n - 1, ff.ext_prod(terms.v), aux=True))
        return out

    def build_aux_trace(self, main: Arr, challenges: Sequence[FE]) -> Arr:
        n = self.trace_length
        gamma, delta = challenges
        terms = (
            FE.ext(np.broadcast_to(gamma.v, (4, n)).copy())
            - FE.base(main[0])
            - delta * FE.base(main[1])
        )
        z = np.empty((4, n), dtype=np.uint64)
        z[:, 0] = ff.ext_one()[:, 0]
        z[:, 1:] = ff.ext_cumprod(terms.v[:, : n - 1])
        return z.reshape(1, 4, n)

    @classmethod
    def example(
        cls, trace_length: int, width: int = 40, seed: bytes = b"ex"
    ) -> tuple[RegisterPermutationAir, Arr]:
        """An instance with pseudo-random public data and its valid trace."""
        n, m = trace_length, width - 2
        seeds = _pseudo_random(seed + b"/seeds", m)
        pairs = _pseudo_random(seed + b"/pairs", 2 * (n - 1)).reshape(2, n - 1)
        order = np.argsort(pairs[0], kind="stable")  # the trace holds the list sorted by key
        trace = np.zeros((width, n), dtype=np.uint64)
        trace[0, : n - 1] = pairs[0, order]
        trace[1, : n - 1] = pairs[1, order]
        regs = seeds.copy()
        idx1 = np.roll(np.arange(m), -1)
        idx2 = np.roll(np.arange(m), -2)
        for i in range(n):
            trace[2:, i] = regs
            regs = (regs * regs[idx1] % P64 + regs[idx2] + trace[0, i]) % P64
        air = cls(n, width, seeds, int(trace[2, n - 1]), pairs)
        return air, trace
