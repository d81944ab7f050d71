"""Generate the batch AIR's on-chain evaluator from the Python AIR (symbolic execution).

`BatchAir.transition` is run once on recording elements (`Sym`) in place of FE: every
+, -, * becomes a node of an expression DAG, hash-consed (common subexpressions are
shared) with constants folded. The DAG is emitted as straight-line Vyper over
stark_lib's packed extension arithmetic: at the out-of-domain point every cell and
challenge is an extension element and every constant a base element, so a product
with a constant is `ext_mul_base`, a sum with a constant touches one lane.

The boundary list is derived the same way: `BatchAir.boundaries` runs on a probe
public input whose every statement-dependent value is a distinct marker, and each
boundary's column, row and value source (literal, a count, an initial index or
price, the memory or event product) is read off it. The per-entry products over the
public input are hand-written Vyper (stark_air_batch_public.vy) that parse the
statement bytes as batch_statement.statement_bytes lays them out.

Regenerate after any AIR change: `python -m perpnet.l1.air_codegen`;
tests/l1/test_stark_air_batch.py fails while the committed contracts are stale.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perpnet.core.markets import MarketSet
from perpnet.stark import field as ff
from perpnet.stark.air import FE, Frame
from perpnet.stark.batch_air import BatchAir, BatchPublic, MemoryTerms
from perpnet.stark.batch_layout import MarketConstants, market_constants
from perpnet.stark.field import P

CONTRACTS = Path(__file__).resolve().parent / "contracts"
PREFIX = "stark_air_batch"
MAX_PART_NODES = 520
"""Emitted operations per transition contract: keeps each under EIP-170's 24,576 bytes."""

# ------------------------------------------------------------------ the expression DAG

Node = tuple[str, int, int]
"""(op, a, b): op in var/const/add/sub/mul/neg; var: a = frame slot; const: a = value."""


class Graph:
    """Hash-consed expression nodes in creation (= topological) order."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.ids: dict[Node, int] = {}

    def node(self, op: str, a: int, b: int = 0) -> int:
        key = (op, a, b)
        got = self.ids.get(key)
        if got is None:
            got = self.ids[key] = len(self.nodes)
            self.nodes.append(key)
        return got

    def const_of(self, i: int) -> int | None:
        op, a, _ = self.nodes[i]
        return a if op == "const" else None

    def const(self, v: int) -> int:
        return self.node("const", v % P)

    def add(self, x: int, y: int) -> int:
        cx, cy = self.const_of(x), self.const_of(y)
        if cx is not None and cy is not None:
            return self.const(cx + cy)
        if cx == 0:
            return y
        if cy == 0:
            return x
        return self.node("add", min(x, y), max(x, y))

    def neg(self, x: int) -> int:
        cx = self.const_of(x)
        if cx is not None:
            return self.const(-cx)
        op, a, _ = self.nodes[x]
        if op == "neg":
            return a
        return self.node("neg", x)

    def sub(self, x: int, y: int) -> int:
        cx, cy = self.const_of(x), self.const_of(y)
        if cx is not None and cy is not None:
            return self.const(cx - cy)
        if x == y:
            return self.const(0)
        if cy == 0:
            return x
        if cx == 0:
            return self.neg(y)
        if cy is not None:  # x - c = x + (-c): one lane
            return self.add(x, self.const(-cy))
        return self.node("sub", x, y)

    def mul(self, x: int, y: int) -> int:
        cx, cy = self.const_of(x), self.const_of(y)
        if cx is not None and cy is not None:
            return self.const(cx * cy)
        if cx is not None:
            x, y, cx, cy = y, x, cy, cx
        if cy == 0:
            return self.const(0)
        if cy == 1:
            return x
        if cy == P - 1:
            return self.neg(x)
        if cy is not None:
            op, a, b = self.nodes[x]
            inner = self.const_of(b) if op == "mul" else None
            if inner is not None:  # (a·c1)·c2 = a·(c1·c2)
                return self.mul(a, self.const(inner * cy))
        return self.node("mul", min(x, y), max(x, y))


class Sym(FE):
    """A recording field element: arithmetic adds nodes to the graph instead of
    computing. A subclass of FE, so FE.const(k) * Sym dispatches to Sym's reflected
    operators. `v` is empty so BatchAir.transition takes its array path."""

    __slots__ = ("g", "i")

    def __init__(self, g: Graph, i: int) -> None:
        super().__init__(np.empty(0, dtype=np.uint64), True)
        self.g = g
        self.i = i

    def _id(self, other: FE | int) -> int:
        if isinstance(other, Sym):
            return other.i
        if isinstance(other, FE):
            if other.is_ext or other.v.size != 1:
                raise TypeError("only base constants may enter a recorded expression")
            return self.g.const(int(other.v.reshape(-1)[0]))
        return self.g.const(int(other))

    def __add__(self, other: FE | int) -> Sym:
        return Sym(self.g, self.g.add(self.i, self._id(other)))

    __radd__ = __add__

    def __sub__(self, other: FE | int) -> Sym:
        return Sym(self.g, self.g.sub(self.i, self._id(other)))

    def __rsub__(self, other: FE | int) -> Sym:
        return Sym(self.g, self.g.sub(self._id(other), self.i))

    def __neg__(self) -> Sym:
        return Sym(self.g, self.g.neg(self.i))

    def __mul__(self, other: FE | int) -> Sym:
        return Sym(self.g, self.g.mul(self.i, self._id(other)))

    __rmul__ = __mul__


@dataclass(frozen=True, slots=True)
class Recorded:
    graph: Graph
    outputs: list[int]
    frame_size: int
    num_challenges: int


def record_transitions(air: BatchAir) -> Recorded:
    """The transition constraints as a DAG over frame slots (cur, nxt, aux_cur, aux_nxt,
    as the on-chain verifier lays the frame out) and challenges (slots after those)."""
    g = Graph()
    w, a = air.width, air.aux_width
    size = 2 * w + 2 * a
    cells = [Sym(g, g.node("var", i)) for i in range(size + air.num_aux_challenges)]
    frame = Frame(
        cur=cells[:w],
        nxt=cells[w : 2 * w],
        aux_cur=cells[2 * w : 2 * w + a],
        aux_nxt=cells[2 * w + a : size],
        challenges=cells[size:],
    )
    outs = air.transition(frame)
    ids = [o.i if isinstance(o, Sym) else g.const(int(o.v.reshape(-1)[0])) for o in outs]
    return Recorded(g, ids, size, air.num_aux_challenges)


def evaluate_graph(rec: Recorded, values: Sequence[int]) -> list[int]:
    """The recorded outputs on packed extension values (frame then challenges): the
    generator's own check that the DAG computes what the AIR does."""
    vals: list[tuple[int, ...]] = []
    for op, a, b in rec.graph.nodes:
        if op == "var":
            vals.append(_unpack(values[a]))
        elif op == "const":
            vals.append((a, 0, 0, 0))
        elif op == "add":
            vals.append(tuple((x + y) % P for x, y in zip(vals[a], vals[b], strict=True)))
        elif op == "sub":
            vals.append(tuple((x - y) % P for x, y in zip(vals[a], vals[b], strict=True)))
        elif op == "neg":
            vals.append(tuple(-x % P for x in vals[a]))
        else:
            vals.append(_ext_mul(vals[a], vals[b]))
    return [_pack(vals[i]) for i in rec.outputs]


def _unpack(x: int) -> tuple[int, int, int, int]:
    m = (1 << 64) - 1
    return (x & m, (x >> 64) & m, (x >> 128) & m, x >> 192)


def _pack(v: Sequence[int]) -> int:
    return v[0] | (v[1] << 64) | (v[2] << 128) | (v[3] << 192)


def _ext_mul(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int]:
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return (
        (a0 * b0 + 11 * (a1 * b3 + a2 * b2 + a3 * b1)) % P,
        (a0 * b1 + a1 * b0 + 11 * (a2 * b3 + a3 * b2)) % P,
        (a0 * b2 + a1 * b1 + a2 * b0 + 11 * a3 * b3) % P,
        (a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0) % P,
    )


# ------------------------------------------------------------------ Vyper emission


def _live(rec: Recorded, outputs: Sequence[int]) -> list[int]:
    """Nodes the outputs depend on, in topological order."""
    seen: set[int] = set()
    stack = list(outputs)
    nodes = rec.graph.nodes
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        op, a, b = nodes[i]
        if op in ("add", "sub", "mul"):
            stack += [a, b]
        elif op == "neg":
            stack.append(a)
    return sorted(seen)


def emit_body(rec: Recorded, outputs: Sequence[int], indent: str = "    ") -> list[str]:
    """Straight-line statements computing `outputs` into `cons` (frame in `frame`,
    challenges in `ch`); constants appear inline, never as variables."""
    g = rec.graph
    lines: list[str] = []

    def ref(i: int) -> str:
        c = g.const_of(i)
        return str(c) if c is not None else f"v{i}"

    for i in _live(rec, outputs):
        op, a, b = g.nodes[i]
        if op == "const":
            continue
        if op == "var":
            src = f"frame[{a}]" if a < rec.frame_size else f"ch[{a - rec.frame_size}]"
            expr = src
        elif op == "neg":
            expr = f"L.ext_neg({ref(a)})"
        elif op == "mul" and (g.const_of(a) is not None or g.const_of(b) is not None):
            x, c = (b, a) if g.const_of(a) is not None else (a, b)
            expr = f"L.ext_mul_base({ref(x)}, {ref(c)})"
        else:
            fn = {"add": "ext_add", "sub": "ext_sub", "mul": "ext_mul"}[op]
            expr = f"L.{fn}({ref(a)}, {ref(b)})"
        lines.append(f"{indent}v{i}: uint256 = {expr}")
    for o in outputs:
        lines.append(f"{indent}cons.append({ref(o)})")
    return lines


# ------------------------------------------------------------------ boundaries


@dataclass(frozen=True, slots=True)
class BoundarySpec:
    """One boundary as the contract states it: column, whether the row is the last
    (else 0), aux, and the Vyper expression of its value."""

    column: int
    last: bool
    aux: bool
    value: str


_MARK = 1_000_003
"""Probe markers: statement-dependent values the boundaries take (none is a constant
of the boundary list, which holds 0, 1 and 1023)."""


def _probe(markets: Sequence[MarketConstants], k: int) -> list[BoundarySpec]:
    """BatchAir.boundaries on a probe whose statement-dependent values are markers
    (scaled by k), each value traced back to its source."""
    m = len(markets)
    n = 1 << 20
    before = MemoryTerms([5], [0], [[1, 2, 3, 4, 5]], [6], [[7] * m], [[8] * m])
    after = MemoryTerms([5], [9], [[1, 2, 3, 4, 5]], [6], [[7] * m], [[8] * m])
    counts = {"ev.deposits": 11 * k, "ev.withdrawals": 13 * k, "ev.funding": 17 * k}
    counts["ev.forced"] = 19 * k
    probe = BatchPublic(
        statement=b"",
        trace_length=n,
        markets=tuple(markets),
        initial_indices=tuple(k * _MARK + i for i in range(m)),
        initial_prices=tuple(k * _MARK + m + i for i in range(m)),
        initial=before,
        final=after,
        deposits=((5, 1),) * counts["ev.deposits"],
        withdrawals=(1,) * counts["ev.withdrawals"],
        funding=((0,) * 2 * m,) * counts["ev.funding"],
        forced=((5, 1),) * counts["ev.forced"],
    )
    air = BatchAir(probe)
    rng = np.random.default_rng(k)
    ch = [FE.ext(rng.integers(0, P, size=(4, 1), dtype=np.uint64)) for _ in range(5)]
    sources: dict[int, str] = {v: name for name, v in counts.items()}
    sources.update({k * _MARK + i: f"PI.initial_index(s, {i})" for i in range(m)})
    sources.update({k * _MARK + m + i: f"PI.initial_price(s, {i})" for i in range(m)})
    targets = [
        (ff.ext(1), "1"),
        (ff.ext(0), "0"),
        (air.memory_target(ch), "PI.memory_target(s, ch[0], ch[1])"),
        (air.event_target(ch), "PI.event_target(s, ev, ch[2])"),
    ]
    out: list[BoundarySpec] = []
    for b in air.boundaries(ch):
        if b.row not in (0, n - 1):
            raise ValueError(f"boundary on row {b.row}: only the first and last are supported")
        if isinstance(b.value, int):
            value = sources.get(b.value, str(b.value))
        else:
            found = [
                src for arr, src in targets if np.array_equal(arr.reshape(4), b.value.reshape(4))
            ]
            if len(found) != 1:
                raise ValueError(f"auxiliary boundary value of unknown source: {b}")
            value = found[0]
        out.append(BoundarySpec(b.column, b.row == n - 1, b.aux, value))
    return out


def record_boundaries(markets: Sequence[MarketConstants]) -> list[BoundarySpec]:
    """The boundary list with value sources; two probes with different markers must
    agree, so a literal is a constant of the AIR and a source moves with its marker."""
    first, second = _probe(markets, 1), _probe(markets, 2)
    if first != second:
        raise ValueError("a boundary depends on the statement in a way the generator cannot name")
    return first


# ------------------------------------------------------------------ the contracts

HEADER = "#pragma version ~=0.4.3\n"
GENERATED = (
    "GENERATED by `python -m perpnet.l1.air_codegen` from perpnet.stark.batch_air: do not edit."
)
PPB = 1_000_000_000


def probe_air(markets: Sequence[MarketConstants]) -> BatchAir:
    """A BatchAir for these markets; its transitions do not depend on the statement."""
    empty = MemoryTerms([], [], [], [], [], [])
    m = len(markets)
    return BatchAir(
        BatchPublic(b"", 1 << 12, tuple(markets), (0,) * m, (0,) * m, empty, empty, (), (), ())
    )


def split_outputs(rec: Recorded, limit: int = MAX_PART_NODES) -> list[list[int]]:
    """Consecutive runs of constraints whose operations (shared ones counted once per
    run) stay within `limit`: one contract each."""
    parts: list[list[int]] = [[]]
    for o in rec.outputs:
        trial = [*parts[-1], o]
        if parts[-1] and _ops(rec, trial) > limit:
            parts.append([o])
        else:
            parts[-1] = trial
    return parts


def _ops(rec: Recorded, outputs: Sequence[int]) -> int:
    return sum(1 for i in _live(rec, outputs) if rec.graph.nodes[i][0] != "const")


def markets_module(markets: MarketSet, air: BatchAir) -> str:
    """The constants stark_air_batch_public.vy reads; it lays out the memory tuple as
    (account, version, 5 collateral limbs, nonce, pending check, lots, funding) and the
    event tuple as (tag, seq, account, 4 amount limbs, indices, prices), as batch_air
    does today: a change there must be mirrored in the hand-written module."""
    ms = markets.markets
    consts = air.public.markets
    m = len(ms)
    if air.mem_slots != 9 + 2 * m or air.ev_slots != 7 + 2 * m:
        raise ValueError("the AIR's memory or event tuples changed: update stark_air_batch_public")

    def arr(typ: str, values: Sequence[int]) -> str:
        return f"constant({typ}[M]) = [{', '.join(str(v) for v in values)}]"

    lines = [
        HEADER + f'"""\n@title The batch AIR\'s market constants\n@notice {GENERATED}\n"""\n',
        f"M: constant(uint256) = {len(ms)}",
        f"MEM_SLOTS: constant(uint256) = {air.mem_slots}",
        f"EV_SLOTS: constant(uint256) = {air.ev_slots}",
        f"SLOTS: constant(uint256) = {max(air.mem_slots, air.ev_slots)}",
        f"GLOBALS_LEN: constant(uint256) = {80 + 42 * len(ms)}",
        f"IDS: {arr('uint256', [c.market_id for c in consts])}",
        f"IDS_ARE_SLOTS: constant(bool) = {[c.market_id for c in consts] == list(range(m))}",
        f"STEP: {arr('int256', [m.step_size for m in ms])}",
        f"TICK: {arr('uint256', [m.tick_size for m in ms])}",
        f"FUNDING_DEN: {arr('int256', [m.size_scale * PPB for m in ms])}",
        f"MAX_RATE: {arr('int256', [m.max_funding_rate_ppb for m in ms])}",
    ]
    return "\n".join(lines) + "\n"


def part_contract(rec: Recorded, outputs: Sequence[int], index: int) -> str:
    lines = [
        HEADER + '"""',
        f"@title Batch AIR transition constraints, part {index}",
        f"@notice {GENERATED}",
        "        Straight-line evaluation at the out-of-domain point: frame = cur, next,",
        "        aux cur, aux next (packed extension elements), ch = the five challenges.",
        '"""',
        "",
        "import stark_lib as L",
        "",
        f"COUNT: constant(uint256) = {len(outputs)}",
        "",
        "",
        "@external",
        "@pure",
        "def constraints(",
        "    frame: DynArray[uint256, L.MAX_FRAME], ch: DynArray[uint256, L.MAX_CHALLENGES]",
        ") -> DynArray[uint256, COUNT]:",
        f'    assert len(frame) == {rec.frame_size} and len(ch) == {rec.num_challenges}, "frame"',
        "    cons: DynArray[uint256, COUNT] = []",
        *emit_body(rec, outputs),
        "    return cons",
    ]
    return "\n".join(lines) + "\n"


def main_contract(
    air: BatchAir, rec: Recorded, parts: Sequence[Sequence[int]], bounds: Sequence[BoundarySpec]
) -> str:
    k = len(parts)
    # the verifier's out-of-domain layout: main and aux columns at z and z·g
    if rec.frame_size != 2 * (air.width + air.aux_width):
        raise ValueError(f"frame of {rec.frame_size} values for {air.width} + {air.aux_width}")
    lines = [
        HEADER + '"""',
        "@title AIR evaluator for perpnet.stark.batch_air.BatchAir (IAirEvaluator)",
        f"@notice {GENERATED}",
        "        The transition constraints are evaluated by the part contracts",
        "        (stark_air_batch_t*.vy) in order; the boundaries follow BatchAir.boundaries,",
        "        their statement-dependent values parsed from the public input by",
        "        stark_air_batch_public.vy.",
        '"""',
        "",
        "import stark_lib as L",
        "import stark_air_batch_public as PI",
        "",
        f"NAME: constant(Bytes[64]) = {air.name!r}",
        f"WIDTH: constant(uint256) = {air.width}",
        f"AUX_WIDTH: constant(uint256) = {air.aux_width}",
        f"CHALLENGES: constant(uint256) = {air.num_aux_challenges}",
        f"DEGREE: constant(uint256) = {air.transition_degree}",
        f"PART_MAX: constant(uint256) = {max(len(p) for p in parts)}",
        "",
        "",
        "interface IPart:",
        "    def constraints(",
        "        frame: DynArray[uint256, L.MAX_FRAME], ch: DynArray[uint256, L.MAX_CHALLENGES]",
        "    ) -> DynArray[uint256, PART_MAX]: pure",
        "",
        "",
        f"PARTS: public(immutable(address[{k}]))",
        "",
        "",
        "@deploy",
        f"def __init__(parts: address[{k}]):",
        "    PARTS = parts",
        "",
        "",
        "@external",
        "@view",
        "def air_info() -> L.AirInfo:",
        "    return L.AirInfo(",
        "        name=NAME,",
        "        width=WIDTH,",
        "        aux_width=AUX_WIDTH,",
        "        num_challenges=CHALLENGES,",
        "        degree=DEGREE,",
        "    )",
        "",
        "",
        "@external",
        "@view",
        "def evaluate(",
        "    public_input: Bytes[L.MAX_PUBLIC],",
        "    frame: DynArray[uint256, L.MAX_FRAME],",
        "    ch: DynArray[uint256, L.MAX_CHALLENGES],",
        ") -> (DynArray[uint256, L.MAX_CONSTRAINTS], DynArray[L.Boundary, L.MAX_BOUNDARIES]):",
        "    return self._evaluate(frame, ch)",
        "",
        "",
        "@external",
        "@view",
        "def check(",
        "    public_input: Bytes[L.MAX_PUBLIC],",
        "    log_n: uint256,",
        "    ood: DynArray[uint256, L.MAX_OOD],",
        "    ch: DynArray[uint256, L.MAX_CHALLENGES],",
        "    alpha: uint256,",
        "    z: uint256,",
        ") -> bool:",
        "    s: PI.Statement = PI.parse(0)",
        '    assert PI.log2_exact(s.n) == log_n, "proof is for another trace length"',
        "    frame: DynArray[uint256, L.MAX_FRAME] = []",
        f"    for i: uint256 in range({rec.frame_size}):",
        "        frame.append(ood[i])",
        "    cons: DynArray[uint256, L.MAX_CONSTRAINTS] = []",
        "    bounds: DynArray[L.Boundary, L.MAX_BOUNDARIES] = []",
        "    cons, bounds = self._evaluate(frame, ch)",
        f"    L.ood_check(log_n, WIDTH, AUX_WIDTH, {max(1, air.transition_degree - 1)}, ood, cons, "
        "bounds, alpha, z)",
        "    return True",
        "",
        "",
        "@internal",
        "@view",
        "def _evaluate(",
        "    frame: DynArray[uint256, L.MAX_FRAME], ch: DynArray[uint256, L.MAX_CHALLENGES]",
        ") -> (DynArray[uint256, L.MAX_CONSTRAINTS], DynArray[L.Boundary, L.MAX_BOUNDARIES]):",
        '    """The statement is read from the calldata (the external call\'s first argument)."""',
        "    s: PI.Statement = PI.parse(0)",
        "    last: uint256 = (1 << PI.log2_exact(s.n)) - 1",
        f'    assert len(frame) == {rec.frame_size} and len(ch) == CHALLENGES, "frame"',
        "    cons: DynArray[uint256, L.MAX_CONSTRAINTS] = []",
        f"    for i: uint256 in range({k}):",
        "        for v: uint256 in staticcall IPart(PARTS[i]).constraints(frame, ch):",
        "            cons.append(v)",
        "    ev: PI.Events = PI.events(s, ch[2], ch[3])",
        "    bounds: DynArray[L.Boundary, L.MAX_BOUNDARIES] = []",
    ]
    for b in bounds:
        row = "last" if b.last else "0"
        fields = f"column={b.column}, row={row}, aux={b.aux}, value={b.value}"
        lines.append(f"    bounds.append(L.Boundary({fields}))")
    lines.append("    return cons, bounds")
    return "\n".join(lines) + "\n"


def generate(markets: MarketSet | None = None) -> dict[str, str]:
    """File name -> contents of every generated contract."""
    ms = markets or MarketSet()
    consts = market_constants(ms)
    air = probe_air(consts)
    rec = record_transitions(air)
    parts = split_outputs(rec)
    out = {f"{PREFIX}_markets.vy": markets_module(ms, air)}
    for i, part in enumerate(parts):
        out[f"{PREFIX}_t{i}.vy"] = part_contract(rec, part, i)
    out[f"{PREFIX}.vy"] = main_contract(air, rec, parts, record_boundaries(consts))
    return out


def write(directory: Path = CONTRACTS) -> list[Path]:
    files = generate()
    for stale in directory.glob(f"{PREFIX}_t*.vy"):
        if stale.name not in files:
            stale.unlink()
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for path in write():
        print(path)


if __name__ == "__main__":
    main()
