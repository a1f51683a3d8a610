"""Time to solution: DDAttentionPC next to what a PETSc or Python user would pick instead.

CG to a true relative residual of 1e-8 (-ksp_norm_type unpreconditioned;
scipy's CG with pyamg tests ||b - A x|| too, and every true residual is recomputed) on
poisson2d, diffusion2d jump:1e4 channels and lognormal:1, assembled on a
DMDA, right-hand side white noise (the same on every layout). Every cell is
its own process (``mpirun -n P /usr/bin/time -f %M``), so the peak memory
per rank is that preconditioner's alone; the cost of importing python,
torch and petsc4py is measured apart and shown in the table's header.

  jacobi, asm      PETSc (PCASM: DD's boxes and overlap, exact LU, -pc_asm_type basic)
  gamg, hypre      PETSc GAMG and hypre BoomerAMG, defaults
  pyamg-sa         pyamg smoothed aggregation (V-cycle) as the preconditioner of scipy's CG
                   (serial; the optional extra [bench])
  dd-additive      DDAttentionPC from the operator, the paper's additive two-level form
  dd-balanced      the same, balanced (deflated) coarse correction
  dd-multiplicative  the two-grid V-cycle, Chebyshev(2)-Schwarz smoothing (its default when built from
                   the operator; petsc/corrections.py)
  dd-mult1         the same with one smoothing step (Richardson, -pddattn_chebyshev_degree 1)
  dd-mult3         the same with three (-pddattn_chebyshev_degree 3)
  dd-q1            the V-cycle with the bilinear coarse space (-pddattn_coarse q1): no harmonic
                   extensions to build, and no log(H/h)^2 in its bound, but not robust to contrast
  dd-3level        balanced, three levels (-pddattn_levels 3)
  dd-trained       trained in setUp: 10 condition-loss steps (-pddattn_train_steps 10; dense
                   factors, balanced; 255^2 only: its set-up is minutes)
  dd-dense         additive with the dense Schwarz factors of before (-pddattn_factors dense; 255^2 only)

Boxes of 16 x 16 nodes, overlap 2, harmonic coarse space (H/h = 16, H/delta = 8).

    python benchmarks/solve_time.py --out benchmarks/results                  # 255^2, 511^2, 1023^2; 1 rank
    python benchmarks/solve_time.py --grids 255,511 --ranks 4 --merge --out benchmarks/results   # add 4 ranks
    python benchmarks/solve_time.py --quick --out /tmp/st                     # smoke test

Writes solve_time.json, solve_time.md and solve_time.png (total seconds against unknowns).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PROBLEMS = [("poisson2d", "const"), ("diffusion2d", "jump:1e4"), ("diffusion2d", "lognormal:1")]
PCS = ["jacobi", "asm", "gamg", "hypre", "pyamg-sa", "dd-additive", "dd-balanced", "dd-multiplicative", "dd-mult1",
       "dd-mult3", "dd-q1", "dd-3level", "dd-trained", "dd-dense"]
CORE, DELTA, RTOL = 16, 2, 1e-8


def petsc_options(pc, boxes):
    dd = {"pc_type": "python", "pc_python_type": "pddattn.petsc.DDAttentionPC",
          "pddattn_subdomains": f"{boxes}x{boxes}", "pddattn_overlap": str(DELTA)}
    return {"jacobi": {"pc_type": "jacobi"},
            "asm": {"pc_type": "asm", "pc_asm_type": "basic", "sub_ksp_type": "preonly", "sub_pc_type": "lu"},
            "gamg": {"pc_type": "gamg"}, "hypre": {"pc_type": "hypre", "pc_hypre_type": "boomeramg"},
            "dd-additive": dict(dd, pddattn_coarse_correction="additive"),
            "dd-balanced": dict(dd, pddattn_coarse_correction="balanced"),
            "dd-multiplicative": dict(dd, pddattn_coarse_correction="multiplicative"),
            "dd-mult1": dict(dd, pddattn_coarse_correction="multiplicative", pddattn_chebyshev_degree="1"),
            "dd-mult3": dict(dd, pddattn_coarse_correction="multiplicative", pddattn_chebyshev_degree="3"),
            "dd-q1": dict(dd, pddattn_coarse_correction="multiplicative", pddattn_coarse="q1"),
            "dd-3level": dict(dd, pddattn_coarse_correction="balanced", pddattn_levels="3"),
            "dd-trained": dict(dd, pddattn_train_steps="10"),
            "dd-dense": dict(dd, pddattn_coarse_correction="additive", pddattn_factors="dense")}[pc]


def _rhs(problem, natural_rows):
    from pddattn.problems.samplers import Noise
    return Noise(0, 0, 0, 1, problem.n).at(natural_rows)[0]


def worker_petsc(args):
    """One solve with a PETSc preconditioner; rank 0 prints one JSON line."""
    import numpy as np
    from petsc4py import PETSc
    from pddattn.petsc.solve import assemble_problem, timed_solve, true_residual_cg
    from pddattn.problems import make_problem
    problem = make_problem(args.family, (args.grid, args.grid), args.coefficient)
    A, dm, natural = assemble_problem(problem, PETSc.COMM_WORLD, dmda=True)
    b = A.createVecLeft()
    b.setArray(_rhs(problem, natural))
    opts = PETSc.Options()
    for key, value in petsc_options(args.worker, (args.grid + 1) // CORE).items():
        if opts.hasName(key):  # a PETSC_OPTIONS value wins (trying variants)
            continue
        opts[key] = value
    ksp = true_residual_cg(A, dm, RTOL, 20000)
    if args.worker == "asm":  # exactly DD's boxes, as index sets in the PETSc ordering
        from iterations2d import _asm_boxes
        from pddattn.petsc.local import Numbering
        petsc_of = Numbering(dm).to_petsc(np.arange(problem.n))
        _asm_boxes(ksp.getPC(), problem, (args.grid + 1) // CORE, petsc_of, PETSc.COMM_WORLD)
    _, setup, solve, true_rel = timed_solve(ksp, A, b)
    if PETSc.COMM_WORLD.getRank() == 0:
        print(json.dumps({"iterations": ksp.getIterationNumber(), "reason": ksp.getConvergedReason(),
                          "setup_s": setup, "solve_s": solve, "true_residual": true_rel}), flush=True)


def worker_pyamg(args):
    """pyamg smoothed aggregation as a CG preconditioner (serial), one JSON line."""
    import numpy as np
    import pyamg
    from pddattn.problems import make_problem
    problem = make_problem(args.family, (args.grid, args.grid), args.coefficient)
    A = problem.A.tocsr()
    b = _rhs(problem, np.arange(problem.n))
    t0 = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(A)
    setup = time.perf_counter() - t0
    from scipy.sparse.linalg import cg
    count = [0]
    x, info = cg(A, b, rtol=RTOL, maxiter=20000, M=ml.aspreconditioner(cycle="V"),
                 callback=lambda _: count.__setitem__(0, count[0] + 1))
    solve = time.perf_counter() - t0 - setup
    true_rel = float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    print(json.dumps({"iterations": count[0], "reason": 2 if info == 0 else -3,
                      "setup_s": setup, "solve_s": solve, "true_residual": true_rel}), flush=True)


def _env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_rmaps_base_oversubscribe="1", PYTHONPATH=str(ROOT))


def cell(pc, family, coefficient, grid, ranks):
    """One measured solve: its JSON plus peak memory (GB) of every rank."""
    worker = ["--worker", pc, "--family", family, "--coefficient", coefficient, "--grid", str(grid)]
    timer = ["/usr/bin/time", "-f", "pddattn-peak %M"]
    if pc == "pyamg-sa":
        cmd = timer + [sys.executable, __file__, *worker]
    else:
        cmd = ["mpirun", "--oversubscribe", "-n", str(ranks)] + timer + [sys.executable, __file__, *worker]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=3600)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    out = lines[-1]
    out["peak_gb"] = [int(kb) / 2**20 for kb in re.findall(r"pddattn-peak (\d+)", p.stderr)]
    out["total_s"] = out["setup_s"] + out["solve_s"]
    return out


def import_cost():
    p = subprocess.run(["/usr/bin/time", "-f", "pddattn-peak %M", sys.executable, "-c",
                        "import torch, petsc4py.PETSc, mpi4py.MPI, pddattn.petsc"],
                       capture_output=True, text=True, env=_env(), cwd=ROOT)
    return int(re.findall(r"pddattn-peak (\d+)", p.stderr)[0]) / 2**20


def markdown(results):
    lines = [f"CG to a true 1e-8; seconds on the 2-core machine, ratios to the GAMG cell of the same table. Cells "
             f"added with --merge come from other runs than the rest (docs/results.md says which). "
             f"Importing python, torch, petsc4py and pddattn alone: {results['import_gb']:.2f} GB per process "
             f"(every cell runs in such a process: the problem comes from pddattn).", ""]
    for (ranks, grid), rows in sorted(_grouped(results["cells"]).items()):
        lines += [f"### {grid}^2 ({grid * grid:,} unknowns), {ranks} rank{'s' if ranks > 1 else ''}", "",
                  "| problem | preconditioner | iterations | setup s | solve s | total s | total / GAMG | "
                  "peak GB per rank | true residual |", "|---|---|---|---|---|---|---|---|---|"]
        order = {f"{f} {k}": i for i, (f, k) in enumerate(PROBLEMS)}
        rows = sorted(rows, key=lambda c: (order.get(c["problem"], len(order)), PCS.index(c["pc"])
                                           if c["pc"] in PCS else len(PCS)))
        for c in rows:
            r = c["result"]
            if "error" in r:
                lines.append(f"| {c['problem']} | {c['pc']} | failed: {r['error']} | | | | | | |")
                continue
            gamg = next((g["result"] for g in rows if g["pc"] == "gamg" and g["problem"] == c["problem"]
                         and "total_s" in g["result"]), None)
            ratio = f"{r['total_s'] / gamg['total_s']:.1f}" if gamg else "-"
            lines.append(f"| {c['problem']} | {c['pc']} | {r['iterations']} | {r['setup_s']:.3f} | "
                         f"{r['solve_s']:.3f} | {r['total_s']:.3f} | {ratio} | {max(r['peak_gb']):.2f} | "
                         f"{r['true_residual']:.1e} |")
        lines.append("")
    return "\n".join(lines)


def _grouped(cells):
    out = {}
    for c in cells:
        out.setdefault((c["ranks"], c["grid"]), []).append(c)
    return out


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    problems = [f"{f} {c}" for f, c in PROBLEMS]
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, name in zip(axes[0], problems):
        for pc in PCS:
            pts = sorted((c["grid"] ** 2, c["result"]["total_s"]) for c in results["cells"]
                         if c["problem"] == name and c["pc"] == pc and c["ranks"] == 1 and "total_s" in c["result"])
            if pts:
                ax.loglog(*zip(*pts), "o-" if pc.startswith("dd") else "s--", label=pc)
        ax.set(title=name, xlabel="unknowns", ylabel="setup + solve s (1 rank)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _rewrite(out):
    """solve_time.md and .png again from the stored json (no cell is run)."""
    results = json.loads((out / "solve_time.json").read_text())
    (out / "solve_time.md").write_text(markdown(results) + "\n")
    plot(results, out / "solve_time.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--grids", default="255,511,1023")
    parser.add_argument("--ranks", default="1")
    parser.add_argument("--pcs", default=",".join(PCS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--merge", action="store_true", help="add these cells to the stored solve_time.json")
    parser.add_argument("--rewrite", action="store_true", help="remake solve_time.md and .png from the stored json")
    parser.add_argument("--worker")
    parser.add_argument("--family")
    parser.add_argument("--coefficient")
    parser.add_argument("--grid", type=int)
    args = parser.parse_args()
    if args.worker:
        return worker_pyamg(args) if args.worker == "pyamg-sa" else worker_petsc(args)
    if args.rewrite:
        return _rewrite(args.out)
    grids = [63] if args.quick else [int(g) for g in args.grids.split(",")]
    results = {"import_gb": import_cost(), "cells": []}
    stored = args.out / "solve_time.json"
    if args.merge and stored.exists():
        results["cells"] = json.loads(stored.read_text())["cells"]
    for ranks in [int(r) for r in args.ranks.split(",")]:
        for grid in grids:
            for family, coefficient in PROBLEMS[:1] if args.quick else PROBLEMS:
                for pc in args.pcs.split(","):
                    if (pc in ("dd-dense", "dd-trained") and grid > 255) or (pc == "pyamg-sa" and ranks > 1):
                        continue
                    r = cell(pc, family, coefficient, grid, ranks)
                    results["cells"] = [c for c in results["cells"] if (c["problem"], c["pc"], c["grid"], c["ranks"])
                                        != (f"{family} {coefficient}", pc, grid, ranks)]
                    results["cells"].append({"problem": f"{family} {coefficient}", "pc": pc, "grid": grid,
                                             "ranks": ranks, "result": r})
                    print(f"{grid}^2 P={ranks} {family} {coefficient} {pc}: {r}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "solve_time.json").write_text(json.dumps(results, indent=1))
    (args.out / "solve_time.md").write_text(markdown(results) + "\n")
    plot(results, args.out / "solve_time.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
