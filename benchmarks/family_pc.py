"""A family model as a preconditioner and as a solver on operators it never saw, next to classical methods.

The model: ``pddattn train --factors generated`` (Darcy fields at 63^2, 8 x 8 boxes of 8 nodes, overlap 2,
Q1 coarse space, rank 16; the command is printed with the table). Held-out Darcy fields (coefficient seeds
from 2000001, never trained on), at 63^2 and, with no retraining, 127^2 and 255^2 (boxes of the same size
in nodes). One process, OMP_NUM_THREADS=1.

Table 1, CG to a true relative residual of 1e-8 (-ksp_norm_type unpreconditioned), f white:

  learned            DDAttentionPC -pddattn_model (factors generated from the operator; additive, SPD)
  truncated Schwarz  the untrained PC at the *same local rank* 16: [A_i^-1]_16, the same boxes, overlap and
                     Q1 coarse space, additive (Jacobi added, as the learned model's omega D^-1): equal
                     apply cost
  exact additive     the same structure with exact local solves (additive two-level Schwarz)
  exact two-grid     the PC's default from the operator: exact local solves, the V-cycle (multiplicative)
  gamg, hypre        PETSc GAMG and hypre BoomerAMG, defaults

Table 2, error against cost per operator (f = 1, Darcy's): the model's answer and 1, 2, 4, 8 CG steps
preconditioned by it (pddattn apply --refine), next to a sparse direct solve (CHOLMOD through scipy's
factorized / PETSc's MUMPS Cholesky) and CG + GAMG stopped at the same relative error.

    pddattn train --factors generated --operators 64 --steps 2000 --out runs/fam63      # about 4 minutes
    python benchmarks/family_pc.py --model runs/fam63/checkpoint.pt --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEEDS = range(2_000_001, 2_000_005)
RTOL, RANK, DELTA = 1e-8, 16, 2


def _options(pc, model, boxes):
    dd = {"pc_type": "python", "pc_python_type": "pddattn.petsc.DDAttentionPC"}
    same = dict(dd, pddattn_subdomains=f"{boxes}x{boxes}", pddattn_overlap=str(DELTA), pddattn_coarse="q1")
    return {"learned": dict(dd, pddattn_model=model),
            "truncated Schwarz r=16": dict(same, pddattn_rank=str(RANK), pddattn_coarse_correction="additive"),
            "exact additive": dict(same, pddattn_coarse_correction="additive"),
            "exact two-grid": same,
            "gamg": {"pc_type": "gamg"},
            "hypre": {"pc_type": "hypre", "pc_hypre_type": "boomeramg"}}[pc]


PCS = ["learned", "truncated Schwarz r=16", "exact additive", "exact two-grid", "gamg", "hypre"]


def solve_cell(pc, model, problem, boxes, index):
    """CG iterations, set-up and solve seconds, true residual of one PC on one operator (f white)."""
    from petsc4py import PETSc
    from pddattn.petsc.solve import assemble_problem, timed_solve, true_residual_cg
    from pddattn.problems.samplers import Noise
    A, dm, natural = assemble_problem(problem, PETSc.COMM_WORLD, dmda=True)
    b = A.createVecLeft()
    b.setArray(Noise(0, 0, 0, 1, problem.n).at(natural)[0])
    prefix = f"c{index}_"
    opts = PETSc.Options(prefix)
    for key, value in _options(pc, model, boxes).items():
        opts[key] = value
    ksp = true_residual_cg(A, dm, RTOL, 5000, prefix)
    _, setup, solve, true = timed_solve(ksp, A, b)
    out = {"iterations": ksp.getIterationNumber(), "reason": ksp.getConvergedReason(), "setup_s": setup,
           "solve_s": solve, "true_residual": true}
    ksp.destroy()
    A.destroy()
    dm.destroy()
    return out


def table1(model, sides):
    from pddattn.family_run import boxes_for, load
    from pddattn.problems import make_problem
    spec, _ = load(model)
    rows, index = [], 0
    for side in sides:
        boxes = boxes_for((side, side), spec.box)[0]
        for pc in PCS:
            cells = []
            for seed in SEEDS:
                cells.append(solve_cell(pc, model, make_problem("diffusion2d", (side, side), spec.coefficient,
                                                                seed=seed), boxes, index))
                index += 1
            rows.append({"side": side, "pc": pc, **{k: float(np.mean([c[k] for c in cells])) for k in
                                                    ("iterations", "setup_s", "solve_s")},
                         "worst_true_residual": max(c["true_residual"] for c in cells),
                         "converged": all(c["reason"] > 0 for c in cells)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table2(model, side):
    """Relative error of f = 1 against seconds per operator (set-up included) for each method."""
    import scipy.sparse.linalg as spl
    from petsc4py import PETSc
    from pddattn.family_run import load, model_for
    from pddattn.problems import make_problem
    from pddattn.refine import refine
    spec, payload = load(model)
    out = {"learned": {k: [] for k in (0, 1, 2, 4, 8)}, "direct": [], "gamg": {}}
    for seed in SEEDS:
        problem = make_problem("diffusion2d", (side, side), spec.coefficient, seed=seed)
        A, f = problem.A.tocsr(), np.ones((problem.n, 1))
        t0 = time.perf_counter()
        solve = spl.factorized(A.tocsc())
        u = solve(f[:, 0])[:, None]
        out["direct"].append(time.perf_counter() - t0)
        for steps in out["learned"]:
            t0 = time.perf_counter()
            m = model_for(spec, payload, A, problem.grid)
            op = m.values([A])[0]
            with torch.no_grad():
                apply = (lambda R, m=m, op=op: m.apply_of(op)(torch.as_tensor(R.T.copy())).numpy().T)
                U, _ = refine(A, f, apply(f), apply, steps)
            seconds = time.perf_counter() - t0
            out["learned"][steps].append((float(np.linalg.norm(U - u) / np.linalg.norm(u)), seconds))
        for rtol in (1e-2, 1e-4, 1e-8):
            M = PETSc.Mat().createAIJ(A.shape, csr=(A.indptr, A.indices, A.data))
            ksp = PETSc.KSP().create()
            ksp.setOperators(M)
            ksp.setType("cg")
            ksp.getPC().setType("gamg")
            ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
            ksp.setTolerances(rtol=rtol, max_it=5000)
            b, x = M.createVecs()
            b.setArray(f[:, 0])
            t0 = time.perf_counter()
            ksp.solve(b, x)
            seconds = time.perf_counter() - t0
            out["gamg"].setdefault(rtol, []).append(
                (float(np.linalg.norm(x.getArray() - u[:, 0]) / np.linalg.norm(u)), seconds))
            ksp.destroy()
            M.destroy()
    return {"side": side,
            "learned": {str(k): np.mean(v, axis=0).tolist() for k, v in out["learned"].items()},
            "direct_s": float(np.mean(out["direct"])),
            "gamg": {str(k): np.mean(v, axis=0).tolist() for k, v in out["gamg"].items()}}


def markdown(result):
    lines = [f"Model: {result['model']} ({result['summary']})", "",
             "| grid | preconditioner | CG iterations to a true 1e-8 | set-up s | solve s | worst true residual |",
             "|---|---|---|---|---|---|"]
    for r in result["table1"]:
        lines.append(f"| {r['side']}^2 | {r['pc']} | {r['iterations']:.1f} | {r['setup_s']:.3f} | "
                     f"{r['solve_s']:.3f} | {r['worst_true_residual']:.1e}"
                     + ("" if r["converged"] else " (not converged)") + " |")
    t = result["table2"]
    lines += ["", f"Error against seconds per operator at {t['side']}^2, f = 1 (set-up included):", "",
              "| method | relative error | s per operator |", "|---|---|---|"]
    for k, (err, s) in t["learned"].items():
        lines.append(f"| learned, {'its answer' if k == '0' else f'+ {k} CG steps'} | {err:.2e} | {s:.4f} |")
    for k, (err, s) in t["gamg"].items():
        lines.append(f"| CG + GAMG, rtol {float(k):.0e} | {err:.2e} | {s:.4f} |")
    lines.append(f"| sparse direct (scipy factorized) | rounding | {t['direct_s']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    import petsc4py
    petsc4py.init([])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--sides", default="63,127,255")
    parser.add_argument("--name", default="family_pc", help="the results' file stem (default family_pc)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from pddattn.family_run import load
    spec, payload = load(args.model)
    s = payload["summary"]
    summary = (f"{s['parameters']:,} parameters, local factors {spec.local}, {spec.operators} training operators, "
               f"{spec.steps} steps, data {spec.data}, unroll {spec.unroll}; held-out error at K=1 "
               f"{s['test_error']['K=1']:.3e}")
    result = {"model": args.model, "summary": summary, "spec": spec.to_dict(),
              "table1": table1(args.model, [int(v) for v in args.sides.split(",")]), "table2": table2(args.model, int(args.sides.split(",")[0]))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{args.name}.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
