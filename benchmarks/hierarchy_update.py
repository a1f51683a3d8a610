"""The hierarchy's values for a new operator against building it: update(A) and batched values(A_1..A_B).

A family model sees a new operator on every batch; the PC sees new values
of its Mat at every KSPSetOperators. Both keep the hierarchy's structure
(index sets, partition of unity, patterns, the harmonic basis's plan) and
recompute its values. This measures, on one core (OMP_NUM_THREADS=1):

- build: ``build_hierarchy`` (structure and values) plus the exact operator
  on it (every level's diag(A_i) and the top A_top factored, as the exact
  PC holds them: factors.Exact, their one owner);
- update: ``update(A)`` of a hierarchy that has been updated before, then
  ``refactor`` of the operator on its new values (as the PC's set-up on new
  values of its Mat): A_l, Phi_l (harmonic: one sparse solve),
  A_{l+1} = Phi^T A_l Phi, the numeric refactorizations;
- values(B): ``values`` of B operators at once (A_l, Phi_l, A_top of each;
  no local factorizations), for B = 1, 2, 4, 8: it must grow linearly in B.

Each figure is the median of ``--repeat`` runs in one process; the ratio
update / build is the issue's target (at most 1/3 at 511^2, two and three
levels). Operators are diffusion2d with lognormal:1 coefficients of
different seeds (one pattern).

    python benchmarks/hierarchy_update.py --out benchmarks/results     # about 2 minutes
    python benchmarks/hierarchy_update.py --quick --out /tmp/hierarchy  # 127^2, seconds
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pddattn.hierarchy import build_hierarchy  # noqa: E402
from pddattn.models import schwarz_operator  # noqa: E402
from pddattn.problems import make_problem  # noqa: E402

BATCHES = (1, 2, 4, 8)


def _timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(side, boxes, levels, repeat):
    """One row: seconds of build, update and values(B) at side^2 with boxes x boxes subdomains."""
    problems = [make_problem("diffusion2d", (side, side), "lognormal:1", seed=s) for s in range(1, 10)]
    matrices = [p.A for p in problems]  # assembled outside the timings
    spec = {"kind": "boxes", "N": [boxes, boxes], "delta": 2, "pou": "count", "coarse": "harmonic"}

    def build():
        h = build_hierarchy(problems[0], spec, levels)
        schwarz_operator(h).free()
        h.free()

    def update(A):
        h.update(A)
        assert model.refactor(h.decomposition, h.problem, h.below)

    h = build_hierarchy(problems[0], spec, levels)
    model = schwarz_operator(h)
    update(matrices[1])  # the first update makes the harmonic interiors' factorization: kept after
    turn = iter(range(10**9))
    row = {"grid": f"{side}^2", "n": side * side, "boxes": f"{boxes}x{boxes}", "levels": levels,
           "level_sizes": [level.decomposition.n for level in h.levels], "top": h.top.shape[0],
           "build_s": _timed(build, repeat),
           "update_s": _timed(lambda: update(matrices[2 + next(turn) % 7]), repeat)}
    row["update_over_build"] = row["update_s"] / row["build_s"]
    row["values_s"] = {str(B): _timed(lambda B=B: h.values(matrices[1:1 + B]), repeat) for B in BATCHES}
    row["values_per_operator_s"] = {B: t / int(B) for B, t in row["values_s"].items()}
    model.free()
    h.free()
    return row


def markdown(rows):
    lines = ["| grid | boxes | levels | level sizes, top | build s | update s | update / build | "
             + " | ".join(f"values B={B} s" for B in BATCHES) + " | values per operator at B=8 / B=1 |",
             "|---|---|---|---|---|---|---|" + "---|" * len(BATCHES) + "---|"]
    for r in rows:
        per = r["values_per_operator_s"]
        lines.append(f"| {r['grid']} | {r['boxes']} | {r['levels']} | {r['level_sizes']}, {r['top']} | "
                     f"{r['build_s']:.3f} | {r['update_s']:.3f} | {r['update_over_build']:.2f} | "
                     + " | ".join(f"{r['values_s'][str(B)]:.3f}" for B in BATCHES)
                     + f" | {per['8'] / per['1']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="127^2 only, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    cases = [(127, 8)] if args.quick else [(255, 16), (511, 32)]
    repeat = 1 if args.quick else args.repeat
    rows = [measure(side, boxes, levels, repeat) for side, boxes in cases for levels in (2, 3)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hierarchy_update.json").write_text(json.dumps({"threads": os.environ["OMP_NUM_THREADS"],
                                                           "repeat": repeat, "rows": rows}, indent=1))
    (out / "hierarchy_update.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
