"""Learned factors in the PC: apply time and iterations in float64 against float32, by local rank.

DDAttentionPC with dense (learned-form) factors Q_i K_i^T on diffusion2d
jump:1e4 at 255^2 and 511^2 on a DMDA (16x16-node boxes, overlap 2,
harmonic coarse space, 1 rank): the Schwarz-initialised factors at local rank
r (``-pddattn_rank r``; 0 = full, the dense A_i^-1 of ``-pddattn_factors
dense``), applied with ``-pddattn_precision float64`` and ``float32``. A
rank below full is singular, so the PC adds Jacobi (its default). Per cell:
ms per application (median of 20), the factors' MB, CG iterations to a true
1e-8 and the true residual reached. The bytes streamed per application are
the factors' (O(N L r)), so float32 should take about half the time where
the factors dominate.

    python benchmarks/precision.py --out benchmarks/results     # about 2 minutes

Writes precision.json and precision.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RANKS = (8, 32, 0)


def measure(grid, rank, precision, repeats=20):
    from petsc4py import PETSc
    from pddattn.petsc.solve import assemble_problem, timed_solve
    from pddattn.problems import make_problem
    problem = make_problem("diffusion2d", (grid, grid), "jump:1e4")
    A, dm, _ = assemble_problem(problem, PETSc.COMM_WORLD, dmda=True)
    prefix = f"p{grid}r{rank}{precision}_"
    opts = PETSc.Options(prefix)
    for key, value in {"subdomains": f"{(grid + 1) // 16}x{(grid + 1) // 16}", "overlap": 2, "rank": rank,
                       "factors": "dense", "precision": precision, "coarse_correction": "additive"}.items():
        opts[f"pddattn_{key}"] = value
    ksp = PETSc.KSP().create()
    ksp.setOptionsPrefix(prefix)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-8, max_it=5000)
    pc = ksp.getPC()
    pc.setDM(dm)
    pc.setType("python")
    pc.setPythonType("pddattn.petsc.DDAttentionPC")
    ksp.setFromOptions()
    b = A.createVecLeft()
    b.setRandom()
    _, setup_s, solve_s, true_rel = timed_solve(ksp, A, b)
    model = pc.getPythonContext().model
    x, y = A.createVecs()
    x.setRandom()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pc.apply(x, y)
        times.append(time.perf_counter() - t)
    factor_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    row = {"grid": grid, "rank": rank or "full", "precision": precision, "apply_ms": 1e3 * float(np.median(times)),
           "factor_mb": factor_mb, "iterations": ksp.getIterationNumber(), "reason": ksp.getConvergedReason(),
           "true_residual": true_rel, "setup_s": setup_s, "solve_s": solve_s}
    ksp.destroy()
    return row


def markdown(rows):
    lines = ["diffusion2d jump:1e4 on a DMDA, 16x16-node boxes, overlap 2, harmonic, additive, Schwarz-initialised "
             "dense factors at local rank r (below full: Jacobi added); 1 rank; CG to a true 1e-8.", "",
             "| grid | r | factors MB (float64 / float32) | apply ms float64 | apply ms float32 | ratio | "
             "iterations float64 / float32 | true residual float32 |", "|---|---|---|---|---|---|---|---|"]
    pairs = {}
    for r in rows:
        pairs.setdefault((r["grid"], r["rank"]), {})[r["precision"]] = r
    for (grid, rank), p in pairs.items():
        a, b = p["float64"], p["float32"]
        lines.append(f"| {grid}^2 | {rank} | {a['factor_mb']:.0f} / {b['factor_mb']:.0f} | {a['apply_ms']:.2f} | "
                     f"{b['apply_ms']:.2f} | {b['apply_ms'] / a['apply_ms']:.2f} | {a['iterations']} / "
                     f"{b['iterations']} | {b['true_residual']:.1e} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--grids", default="255,511")
    args = parser.parse_args()
    import petsc4py
    petsc4py.init([])
    rows = []
    for grid in (int(g) for g in args.grids.split(",")):
        for rank in RANKS:
            if grid > 255 and rank == 0:
                continue  # full dense factors at 511^2 are 1.3 GB: the sparse path's job
            for precision in ("float64", "float32"):
                rows.append(measure(grid, rank, precision))
                print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(rows, indent=1))
    (args.out / "precision.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
