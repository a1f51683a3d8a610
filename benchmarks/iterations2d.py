"""CG iterations in 2D: DD attention from the operator against PETSc's preconditioners.

CG to a true relative residual of 1e-8 (-ksp_norm_type unpreconditioned) on
poisson2d and diffusion2d with jump:1e4 channels and lognormal:1, assembled
on a DMDA, at grids 127^2, 255^2 (511^2 with --grids) on 1, 2 and 4 ranks:

  none, jacobi     PETSc
  asm              PCASM with exactly DD's boxes and overlap (index sets given, exact LU
                   subdomain solves, -pc_asm_type basic: symmetric, for CG); one level
  gamg             PETSc GAMG, defaults
  hypre            hypre BoomerAMG, defaults
  dd-q1            DDAttentionPC from the operator: two-level additive Schwarz, Q1 coarse space
  dd-harmonic      the same with the harmonic (GDSW-type) coarse space
  dd-trained       dd-harmonic trained in setUp on the condition loss (-pddattn_train_steps)

Fixed H/h = 16 and H/delta = 8: boxes of 16x16 nodes (8x8 at 127^2, 16x16 at
255^2, 32x32 at 511^2), delta = 2, so two-level Schwarz theory bounds the
iterations as the grid is refined. Every (grid, ranks) pair is one real
mpirun of this file in worker mode; setup and solve seconds are measured
around KSPSetUp and KSPSolve.

    python benchmarks/iterations2d.py --out benchmarks/results            # 127^2, 255^2
    python benchmarks/iterations2d.py --grids 127,255,511 --train-ranks 1 --out benchmarks/results   # about 1 h
    python benchmarks/iterations2d.py --quick --out /tmp/it2d               # smoke test

Writes iterations2d.json, iterations2d.md and iterations2d.png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROBLEMS = [("poisson2d", "const"), ("diffusion2d", "jump:1e4"), ("diffusion2d", "lognormal:1")]
PCS = ["none", "jacobi", "asm", "gamg", "hypre", "dd-q1", "dd-harmonic", "dd-trained"]
CORE, DELTA = 16, 2


def options(pc, boxes, train_steps):
    """PETSc options of one preconditioner (asm's index sets are set in code)."""
    dd = {"-pc_type": "python", "-pc_python_type": "pddattn.petsc.DDAttentionPC",
          "-pddattn_subdomains": f"{boxes}x{boxes}", "-pddattn_overlap": str(DELTA)}
    return {"none": {"-pc_type": "none"}, "jacobi": {"-pc_type": "jacobi"},
            "asm": {"-pc_type": "asm", "-pc_asm_type": "basic", "-sub_ksp_type": "preonly", "-sub_pc_type": "lu"},
            "gamg": {"-pc_type": "gamg"}, "hypre": {"-pc_type": "hypre", "-pc_hypre_type": "boomeramg"},
            "dd-q1": dict(dd, **{"-pddattn_coarse": "q1"}), "dd-harmonic": dict(dd, **{"-pddattn_coarse": "harmonic"}),
            "dd-trained": dict(dd, **{"-pddattn_coarse": "harmonic", "-pddattn_train_steps": str(train_steps)})}[pc]


def worker(args):
    """One mpirun: every problem and preconditioner at one grid; rank 0 prints JSON lines."""
    import numpy as np
    from petsc4py import PETSc
    from pddattn.petsc.solve import assemble_problem, timed_solve, true_residual_cg
    from pddattn.problems import make_problem
    from pddattn.problems.samplers import Noise
    comm = PETSc.COMM_WORLD
    side = args.grid
    B = (side + 1) // CORE
    for family, coefficient in PROBLEMS[: args.problems]:
        problem = make_problem(family, (side, side), coefficient)
        A, dm, natural = assemble_problem(problem, comm, dmda=True)
        from pddattn.petsc.local import Numbering
        petsc_of = Numbering(dm).to_petsc(np.arange(problem.n))
        b = A.createVecLeft()
        b.setArray(Noise(0, 0, 0, 1, problem.n).at(natural)[0])  # white f, the same on any layout
        for k, pc_name in enumerate(args.pcs.split(",")):
            if pc_name == "dd-trained" and side > args.train_max_grid:
                continue
            prefix = f"b{k}_"
            opts = PETSc.Options(prefix)
            for key, value in options(pc_name, B, args.train_steps).items():
                opts[key[1:]] = value
            ksp = true_residual_cg(A, dm, 1e-8, args.max_it, prefix)
            if pc_name == "asm":
                _asm_boxes(ksp.getPC(), problem, B, petsc_of, comm)
            comm.barrier()
            _, setup, solve, true_rel = timed_solve(ksp, A, b)
            row = {"problem": family if coefficient == "const" else f"{family} {coefficient}", "grid": side,
                   "ranks": comm.getSize(), "pc": pc_name, "iterations": ksp.getIterationNumber(),
                   "reason": ksp.getConvergedReason(), "true_residual": true_rel,
                   "setup_s": comm.tompi4py().allreduce(setup, op=_max()),
                   "solve_s": comm.tompi4py().allreduce(solve, op=_max()), "boxes": f"{B}x{B}"}
            if pc_name.startswith("dd"):
                info = ksp.getPC().getPythonContext().info
                if "training" in info:
                    row["kappa_start"], row["kappa_end"] = info["training"]["start"], info["training"]["end"]
            if comm.getRank() == 0:
                print("ROW " + json.dumps(row), flush=True)
            ksp.destroy()


def _max():
    from mpi4py import MPI
    return MPI.MAX


def _asm_boxes(pc, problem, B, petsc_of, comm):
    """PCASM's subdomains = DD's boxes with overlap (is) and their cores (is_local), in PETSc numbering."""
    import numpy as np
    from petsc4py import PETSc
    from pddattn.decomposition import boxes
    from pddattn.parallel.layout import subdomain_holdings
    d = boxes(problem.grid, (B, B), DELTA, coarse="none")
    mine = subdomain_holdings(d, comm.getSize())[comm.getRank()]

    def as_is(nodes):
        return PETSc.IS().createGeneral(np.sort(petsc_of[nodes]).astype(PETSc.IntType), comm=PETSc.COMM_SELF)
    pc.setASMLocalSubdomains(len(mine), [as_is(d.subdomains[i]) for i in mine], [as_is(d.cores[i]) for i in mine])


def run_all(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1")
    rows = []
    if args.merge and (out / "iterations2d.json").exists():
        rows = json.loads((out / "iterations2d.json").read_text())["rows"]
    done = {(r["grid"], r["ranks"]) for r in rows}
    train_ranks = {int(p) for p in args.train_ranks.split(",")} if args.train_ranks else None
    for side in [int(g) for g in args.grids.split(",")]:
        for P in [int(p) for p in args.ranks.split(",")]:
            if (side, P) in done:
                print(f"-- grid {side}^2, {P} ranks: kept from the earlier run (--merge)", flush=True)
                continue
            pcs = ",".join(pc for pc in args.pcs.split(",")
                           if pc != "dd-trained" or train_ranks is None or P in train_ranks)
            cmd = ["mpirun", "--oversubscribe", "-n", str(P), sys.executable, __file__, "--worker", "--grid",
                   str(side), "--pcs", pcs, "--problems", str(args.problems), "--train-steps",
                   str(args.train_steps), "--train-max-grid", str(args.train_max_grid), "--max-it", str(args.max_it)]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            got = [json.loads(line[4:]) for line in p.stdout.splitlines() if line.startswith("ROW ")]
            for row in got:
                print(f"{row['problem']:24s} {side}^2 P={P} {row['pc']:12s} it={row['iterations']:>5} "
                      f"reason={row['reason']:>2} true={row['true_residual']:.1e} setup={row['setup_s']:.2f}s "
                      f"solve={row['solve_s']:.2f}s", flush=True)
            if p.returncode:
                print(f"grid {side} P={P}: mpirun exited {p.returncode}:\n{p.stderr[-2000:]}", flush=True)
            rows += got
            print(f"-- grid {side}^2, {P} ranks: {time.perf_counter() - t0:.0f} s", flush=True)
            (out / "iterations2d.json").write_text(json.dumps({"rows": rows, "core": CORE, "delta": DELTA}, indent=1))
    report(rows, out)


def report(rows, out):
    """Markdown table (iterations; setup+solve seconds) and a plot of iterations against the grid."""
    lines = []
    for P in sorted({r["ranks"] for r in rows}):
        lines += [f"\n**{P} rank{'s' if P > 1 else ''}** (iterations / setup s / solve s; * = not converged or "
                  f"true residual > 1.01e-8)\n", "| problem | grid | " + " | ".join(PCS) + " |",
                  "|" + "---|" * (len(PCS) + 2)]
        for prob in dict.fromkeys(r["problem"] for r in rows):
            for side in sorted({r["grid"] for r in rows}):
                cells = []
                for pc in PCS:
                    m = [r for r in rows if (r["problem"], r["grid"], r["ranks"], r["pc"]) == (prob, side, P, pc)]
                    if not m:
                        cells.append("")
                        continue
                    r = m[0]
                    bad = "*" if r["reason"] < 0 or r["true_residual"] > 1.01e-8 else ""
                    cells.append(f"{r['iterations']}{bad} / {r['setup_s']:.1f} / {r['solve_s']:.1f}")
                lines.append(f"| {prob} | {side}^2 | " + " | ".join(cells) + " |")
    trained = [r for r in rows if "kappa_start" in r]
    if trained:
        lines += ["\nTrained in setUp (condition loss): kappa estimate start -> end\n",
                  "| problem | grid | ranks | kappa start | kappa end |", "|---|---|---|---|---|"]
        lines += [f"| {r['problem']} | {r['grid']}^2 | {r['ranks']} | {r['kappa_start']:.2f} | {r['kappa_end']:.2f} |"
                  for r in trained]
    (out / "iterations2d.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    probs = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(1, len(probs), figsize=(5 * len(probs), 4), squeeze=False)
    for ax, prob in zip(axes[0], probs):
        for pc in PCS:
            pts = sorted((r["grid"], r["iterations"]) for r in rows if r["problem"] == prob and r["pc"] == pc
                         and r["ranks"] == 1)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=pc)
        ax.set(title=f"{prob}, 1 rank", xlabel="grid side", ylabel="CG iterations to 1e-8", xscale="log",
               yscale="log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "iterations2d.png", dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--grids", default="127,255")
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--pcs", default=",".join(PCS))
    p.add_argument("--problems", type=int, default=len(PROBLEMS))
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--train-max-grid", type=int, default=255, help="train only up to this grid side")
    p.add_argument("--train-ranks", default="", help="run dd-trained only at these rank counts (default: all); "
                   "its training is serial and the same at every P")
    p.add_argument("--merge", action="store_true", help="keep the (grid, ranks) runs already in OUT/iterations2d.json")
    p.add_argument("--max-it", type=int, default=20000)
    p.add_argument("--timeout", type=int, default=7200)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--grid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.grids, args.ranks, args.train_steps = "31", "1,2", 3
    run_all(args)


if __name__ == "__main__":
    main()
