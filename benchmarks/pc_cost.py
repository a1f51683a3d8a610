"""The exact PC's cost model against measurement: flops and bytes per application, and seconds.

For DDAttentionPC built from the operator (diffusion2d jump:1e4 on a DMDA,
16x16-node boxes, overlap 2, harmonic coarse space, balanced correction, 1
rank), ``pddattn.exact.application_cost`` predicts the flops and the bytes
streamed by one application: the block solve (both triangular sweeps of the
Cholesky factor of diag(A_i)), the coarse terms (Phi^T x, the top solve,
Phi z) and the two products with A. The check:

- flops: the model's count of PETSc's own solves equals PETSc's flop
  counter over the same calls (exactly; also a test);
- seconds: applications are memory-bound, so the model predicts
  bytes / bandwidth, with the bandwidth of a triad a = b + s c on arrays of
  the factor's size measured in the same process. The table gives measured
  and predicted milliseconds per application and their ratio, and the set-up
  flops PETSc logs (the factorizations) next to the set-up seconds.

    python benchmarks/pc_cost.py --out benchmarks/results          # 255^2, 511^2, 1023^2: about 2 minutes

Writes pc_cost.json and pc_cost.md.
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


def triad_bandwidth(nbytes, repeats=10):
    """Bytes per second of a = b + s c on three arrays of about ``nbytes`` together (the best of repeats)."""
    m = max(int(nbytes // 24), 1 << 16)
    b, c, a = np.random.rand(m), np.random.rand(m), np.empty(m)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - t)
    return 4 * 8 * m / best  # the two numpy passes read and write 4 arrays' worth


def _per_call(f, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def dd_pc(grid):
    """(problem, A, an unset-up DDAttentionPC) for diffusion2d jump:1e4 on a DMDA, 16x16-node boxes, overlap 2."""
    from petsc4py import PETSc
    from pddattn.petsc.solve import assemble_problem
    from pddattn.problems import make_problem
    problem = make_problem("diffusion2d", (grid, grid), "jump:1e4")
    A, dm, _ = assemble_problem(problem, PETSc.COMM_WORLD, dmda=True)
    opts = PETSc.Options()
    opts["pddattn_subdomains"] = f"{(grid + 1) // 16}x{(grid + 1) // 16}"
    opts["pddattn_overlap"] = "2"
    opts["pddattn_coarse_correction"] = "balanced"  # what this benchmark's cost model was measured for
    pc = PETSc.PC().create()
    pc.setDM(dm)
    pc.setOperators(A)
    pc.setType("python")
    pc.setPythonType("pddattn.petsc.DDAttentionPC")
    pc.setFromOptions()
    return problem, A, pc


def measure(grid, repeats=30):
    from petsc4py import PETSc
    import torch
    from pddattn.exact import application_cost
    problem, A, pc = dd_pc(grid)
    flops0, t0 = PETSc.Log.getFlops(), time.perf_counter()
    pc.setUp()
    setup_s, setup_flops = time.perf_counter() - t0, PETSc.Log.getFlops() - flops0
    model = pc.getPythonContext().model
    nnz = int(A.getInfo(PETSc.Mat.InfoType.LOCAL)["nz_used"])
    cost = application_cost(model, "balanced", a_nnz=nnz)
    x, y = A.createVecs()
    x.setRandom()
    v = torch.from_numpy(np.random.default_rng(0).standard_normal((len(model.own_rows), 1)))
    before = PETSc.Log.getFlops()
    with torch.no_grad():
        model.local_matvec(v)
        model.coarse_term(v)
        model.coarse_term(v)
    logged = PETSc.Log.getFlops() - before
    with torch.no_grad():
        local_s = _per_call(lambda: model.local_matvec(v), repeats)
        coarse_s = _per_call(lambda: model.coarse_term(v), repeats)
    apply_s = _per_call(lambda: pc.apply(x, y), repeats)
    bandwidth = triad_bandwidth(cost["local"][1])
    row = {"grid": grid, "n": problem.n, "setup_s": setup_s, "setup_flops_logged": setup_flops,
           "model_flops": cost["total"][0], "model_bytes": cost["total"][1], "model_logged_flops": cost["logged"],
           "petsc_logged_flops": logged, "local": cost["local"], "coarse": cost["coarse"], "A": cost["A"],
           "bandwidth_gbs": bandwidth / 1e9, "local_ms": 1e3 * local_s, "coarse_ms": 1e3 * coarse_s,
           "apply_ms": 1e3 * apply_s, "predicted_apply_ms": 1e3 * cost["total"][1] / bandwidth,
           "predicted_local_ms": 1e3 * cost["local"][1] / bandwidth}
    pc.destroy()
    return row


def markdown(rows):
    lines = ["diffusion2d jump:1e4 on a DMDA, 16x16-node boxes, overlap 2, harmonic, balanced; 1 rank. Predicted "
             "seconds = modelled bytes / triad bandwidth measured in the same process.", "",
             "| grid | model Mflop / apply | model MB / apply | PETSc-logged Mflop: model / counter | triad GB/s | "
             "local ms: measured / predicted | apply ms: measured / predicted | ratio | set-up s | set-up Mflop "
             "(logged) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['grid']}^2 | {r['model_flops'] / 1e6:.2f} | {r['model_bytes'] / 1e6:.1f} | "
            f"{r['model_logged_flops'] / 1e6:.3f} / {r['petsc_logged_flops'] / 1e6:.3f} | {r['bandwidth_gbs']:.1f} | "
            f"{r['local_ms']:.2f} / {r['predicted_local_ms']:.2f} | {r['apply_ms']:.2f} / "
            f"{r['predicted_apply_ms']:.2f} | {r['apply_ms'] / r['predicted_apply_ms']:.2f} | {r['setup_s']:.2f} | "
            f"{r['setup_flops_logged'] / 1e6:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--grids", default="255,511,1023")
    args = parser.parse_args()
    rows = []
    for grid in (int(g) for g in args.grids.split(",")):
        rows.append(measure(grid))
        print(json.dumps({k: v for k, v in rows[-1].items() if not isinstance(v, (list, tuple))}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pc_cost.json").write_text(json.dumps(rows, indent=1))
    (args.out / "pc_cost.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
