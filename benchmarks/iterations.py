"""CG iteration counts: DD attention as a PETSc preconditioner against PETSc's own.

CG to a relative (unpreconditioned) residual of 1e-8 on A u = f (Fourier
right-hand side with all modes) at n in {1023, 4095, 16383, 65535} on P in
{1, 2} ranks, with

  none, jacobi            PETSc
  asm                     PETSc additive Schwarz: N blocks, overlap delta, exact (LU)
                          subdomain solves, -pc_asm_type basic (symmetric, for CG); one level
  gamg                    PETSc algebraic multigrid
  dd-schwarz              DD attention initialised as two-level additive Schwarz (no training)
  dd-error                the same model trained on the error loss ||M A u - u|| / ||u||
                          with probe data (all frequencies), from the Schwarz start
  dd-kappa                the same model trained on the condition loss, an estimate of
                          log kappa(M A) by Lanczos (pddattn/spectrum.py), from the Schwarz start

Fixed H/delta: cores of 64 nodes (N = (n + 1) / 64) and delta = 8, so
two-level Schwarz theory bounds the condition number independently of n.
Every solve is a real `mpirun -n P pddattn solve` with PETSc options; the
times are those `solve` reports (setup, solve), not process start-up.

    python benchmarks/iterations.py --out benchmarks/results      # about 12 minutes
    python benchmarks/iterations.py --quick --out /tmp/it           # smoke test

Writes iterations.json, iterations.md and iterations.png.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORE, DELTA = 64, 8
BASE = ["-ksp_type", "cg", "-ksp_norm_type", "unpreconditioned", "-ksp_rtol", "1e-8", "-ksp_max_it", "200000"]


def env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                PYTHONPATH=str(ROOT))


def pddattn(*args, ranks=1, timeout=3600):
    cmd = [sys.executable, "-m", "pddattn", *args]
    if ranks > 1:
        cmd = [shutil.which("mpirun"), "--oversubscribe", "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def train_models(n, folder, steps, kappa_steps):
    """The Schwarz-initialised model (0 steps) and the two trained ones, for this n."""
    N, L = (n + 1) // CORE, CORE + 2 * DELTA
    common = ["--n", str(n), "--subdomains", str(N), "--overlap", str(DELTA), "--rank", str(L), "--symmetric",
              "--init", "schwarz", "--data", "probe", "--dtype", "float64"]
    paths = {}
    for name, extra in (("dd-schwarz", ["--steps", "0"]),
                        ("dd-error", ["--steps", str(steps), "--batch", "32", "--lr", "0.003", "--warmup", "50",
                                      "--eval-every", str(max(steps // 4, 1))]),
                        ("dd-kappa", ["--loss", "condition", "--steps", str(kappa_steps), "--lr", "0.001",
                                      "--warmup", "20", "--eval-every", str(max(kappa_steps // 3, 1))])):
        out = folder / f"{name}-{n}"
        log = pddattn("train", *common, *extra, "--out", str(out))
        paths[name] = (str(out / "checkpoint.pt"), log.strip().splitlines()[-1])
    return paths


def preconditioners(n, models):
    N = (n + 1) // CORE
    pcs = {"none": ["-pc_type", "none"], "jacobi": ["-pc_type", "jacobi"],
           "asm": ["-pc_type", "asm", "-pc_asm_blocks", str(N), "-pc_asm_overlap", str(DELTA),
                   "-pc_asm_type", "basic", "-sub_pc_type", "lu"],
           "gamg": ["-pc_type", "gamg"]}
    for name, (path, _) in models.items():
        pcs[name] = ["-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_model", path]
    return pcs


def parse(output):
    it = re.search(r"converged reason (-?\d+): (\d+) iterations", output)
    times = re.search(r"time: setup ([\d.]+) s, solve ([\d.]+) s", output)
    res = re.search(r"\|\| / \|\|b\|\| = ([\d.e+-]+)", output)
    return {"reason": int(it.group(1)), "iterations": int(it.group(2)), "setup_seconds": float(times.group(1)),
            "solve_seconds": float(times.group(2)), "relative_residual": float(res.group(1))}


def markdown(results):
    names = list(results["runs"][0]["pcs"])
    head = "| n | N | P | " + " | ".join(names) + " |"
    lines = ["CG iterations to ||b - Ax|| / ||b|| <= 1e-8 (solve seconds in brackets)", "", head,
             "|" + "---|" * (3 + len(names))]
    for run in results["runs"]:
        cells = []
        for name in names:
            r = run["pcs"][name]
            mark = "" if r["reason"] > 0 else " (no conv.)"
            cells.append(f"{r['iterations']} ({r['solve_seconds']:.2f}){mark}")
        lines.append(f"| {run['n']:,} | {run['N']} | {run['P']}{' (oversubscribed)' if run['P'] > os.cpu_count() else ''}"
                     f" | " + " | ".join(cells) + " |")
    lines += ["", f"DD: cores of {CORE} nodes, delta = {DELTA} (H/delta fixed), local rank {CORE + 2 * DELTA} "
              "(full), coarse rank n_0 (full), symmetric. dd-error: "
              f"{results['train_steps']} steps of the error loss on probe data; dd-kappa: "
              f"{results['kappa_steps']} steps of the condition loss; both from the Schwarz start."]
    return "\n".join(lines)


def plot(results, path):
    from pddattn.compare import pyplot
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    runs = [r for r in results["runs"] if r["P"] == 1]
    for name in runs[0]["pcs"]:
        ax.loglog([r["n"] for r in runs], [r["pcs"][name]["iterations"] for r in runs], "o-", label=name)
    ax.set_xlabel("n")
    ax.set_ylabel("CG iterations (P = 1)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--sizes", default="1023,4095,16383,65535")
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--train-steps", type=int, default=600, help="steps of the error loss")
    p.add_argument("--kappa-steps", type=int, default=300, help="steps of the condition loss")
    p.add_argument("--models", help="folder for the model checkpoints (default: a temporary folder)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if not args.quick else [255, 511]
    ranks = [int(s) for s in args.ranks.split(",")]
    steps = args.train_steps if not args.quick else 20
    kappa_steps = args.kappa_steps if not args.quick else 20
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile
    folder = Path(args.models or tempfile.mkdtemp(prefix="pddattn-iterations-"))
    results = {"train_steps": steps, "kappa_steps": kappa_steps, "runs": [], "models": {}}
    for n in sizes:
        models = train_models(n, folder, steps, kappa_steps)
        results["models"][n] = {k: v[1] for k, v in models.items()}
        for P in ranks:
            run = {"n": n, "N": (n + 1) // CORE, "P": P, "pcs": {}}
            for name, opts in preconditioners(n, models).items():
                run["pcs"][name] = parse(pddattn("solve", "--n", str(n), "--modes", str(n), *BASE, *opts, ranks=P))
            results["runs"].append(run)
            print(" ".join(f"{k}={v['iterations']}" for k, v in run["pcs"].items()), f"(n={n}, P={P})", flush=True)
            (out / "iterations.json").write_text(json.dumps(results, indent=1))
    (out / "iterations.md").write_text(markdown(results) + "\n")
    plot(results, out / "iterations.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
