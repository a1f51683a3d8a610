"""kappa(M A) of Schwarz-initialized DD attention in 2D, refined at fixed H/h and H/delta.

Grids 31^2, 63^2, 127^2 with (n+1)/N = 8 nodes per box side (H/h = 8) and delta = 2
(H/delta = 4); full local and coarse ranks, so M^-1 is two-level additive Schwarz with PoU
weights, built from A (batched eigendecompositions of the A_i, A_0 = Phi^T A Phi). kappa is the
ratio of extreme Ritz values of 200 Lanczos steps on M A in the A inner product (spectrum.py;
at these sizes converged to a few digits). Bar: bounded as the grid is refined.

    python benchmarks/kappa2d.py --out benchmarks/results        # about 3 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pddattn import DDAttention, boxes, make_problem  # noqa: E402
from pddattn.spectrum import condition_number  # noqa: E402

PROBLEMS = [("poisson2d", "const"), ("diffusion2d", "smooth:100"), ("diffusion2d", "jump:1e4"),
            ("diffusion2d", "lognormal:1")]
COARSE = ("q1", "harmonic", "none")


def kappa(family, coefficient, side, coarse, delta=2, steps=200):
    p = make_problem(family, (side, side), coefficient)
    N = (side + 1) // 8
    d = boxes((side, side), (N, N), delta, coarse=coarse, A=p.A)
    model = DDAttention(d, r=d.max_size, init="schwarz", symmetric=True, problem=p, dtype=torch.float64)
    return condition_number(model, steps=steps), d.coarse_size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--grids", default="31,63,127")
    args = ap.parse_args(argv)
    grids = [int(g) for g in args.grids.split(",")]
    rows = []
    for family, coefficient in PROBLEMS:
        for coarse in COARSE:
            row = {"problem": family if coefficient == "const" else f"{family} {coefficient}", "coarse": coarse}
            for side in grids:
                t0 = time.perf_counter()
                row[str(side)], row[f"n0_{side}"] = kappa(family, coefficient, side, coarse)
                print(f"{row['problem']:24s} {coarse:9s} {side}^2: kappa {row[str(side)]:.3g} "
                      f"(n0 {row[f'n0_{side}']}, {time.perf_counter() - t0:.1f} s)", flush=True)
            rows.append(row)
    head = "| problem | coarse | " + " | ".join(f"{g}^2 ({((g + 1) // 8)}x{((g + 1) // 8)} boxes)" for g in grids) + " |"
    lines = [head, "|" + "---|" * (2 + len(grids))]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['coarse']} | " + " | ".join(f"{r[str(g)]:.3g}" for g in grids) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kappa2d.json").write_text(json.dumps(rows, indent=1))
    (out / "kappa2d.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
