"""Prover/verifier benchmark on the representative example AIR (width ~40, degree 2,
one grand-product column), the shape the 1,024-transaction batch AIR is expected to
have. `python -m perpnet.stark.bench` prints JSON; pin it to one core with
`taskset -c 0` to measure the single-core goal.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from perpnet.stark.examples import RegisterPermutationAir
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams, security_bits
from perpnet.stark.prover import prove
from perpnet.stark.verifier import verify

PHASES = (
    "trace_lde",
    "merkle_commit",
    "trace_check",
    "composition",
    "deep",
    "fri",
    "grinding",
    "queries",
)


def machine_info() -> dict[str, Any]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "usable_cores": cores,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def run(
    sizes: tuple[int, ...] = (2**10, 2**11, 2**12, 2**13, 2**14),
    width: int = 40,
    repeats: int = 3,
    params: ProofParams = DEFAULT_PARAMS,
) -> dict[str, Any]:
    """Median prove/verify times, proof size and per-phase breakdown for each size."""
    results: list[dict[str, Any]] = []
    for n in sizes:
        air, trace = RegisterPermutationAir.example(n, width=width, seed=b"bench")
        prove_times: list[float] = []
        verify_times: list[float] = []
        phases: dict[str, list[float]] = {p: [] for p in PHASES}
        proof = b""
        for _ in range(repeats):
            timings: dict[str, float] = {}
            start = time.perf_counter()
            proof = prove(air, trace, params, timings=timings)
            prove_times.append(time.perf_counter() - start)
            for p in PHASES:
                phases[p].append(timings.get(p, 0.0))
            start = time.perf_counter()
            verify(air, proof, params)
            verify_times.append(time.perf_counter() - start)
        results.append(
            {
                "rows": n,
                "cols": width,
                "aux_cols_ext": air.aux_width,
                "prove_s": round(statistics.median(prove_times), 4),
                "verify_ms": round(1000 * statistics.median(verify_times), 2),
                "proof_bytes": len(proof),
                "security_bits": security_bits(params, n),
                "phases_s": {p: round(statistics.median(v), 4) for p, v in phases.items()},
                "prove_s_runs": [round(t, 4) for t in prove_times],
            }
        )
    scaling = []
    for a, b in itertools.pairwise(results):
        na, nb = a["rows"], b["rows"]
        ratio = b["prove_s"] / a["prove_s"] if a["prove_s"] else 0.0
        nlogn = (nb * math.log2(nb)) / (na * math.log2(na))
        scaling.append(
            {"from": na, "to": nb, "prove_ratio": round(ratio, 3), "nlogn_ratio": round(nlogn, 3)}
        )
    return {
        "air": "RegisterPermutationAir (degree 2, 1 grand-product column)",
        "params": {
            "blowup": params.blowup,
            "num_queries": params.num_queries,
            "folding_factor": params.folding_factor,
            "grinding_bits": params.grinding_bits,
            "final_poly_size": params.final_poly_size,
        },
        "repeats": repeats,
        "machine": machine_info(),
        "results": results,
        "scaling": scaling,
    }


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
