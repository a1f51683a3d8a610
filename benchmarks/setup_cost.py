"""Set-up cost per rank: peak memory and seconds of training and PC set-up at 1, 2 and 4 ranks.

Each cell is a real ``mpirun -n P /usr/bin/time -f %M ...`` of a whole
command, so the figures are what a user sees: peak resident memory of every
rank and the job's wall time. The cost of importing python, torch, mpi4py
and petsc4py (and pddattn) is measured alone and shown apart; the ratios
use the memory *above* it. On the 2-core development machine 4 ranks are
oversubscribed (two ranks per core): their seconds are not a scaling result,
their memory is.

    python benchmarks/setup_cost.py --out benchmarks/results            # about 7 minutes
    python benchmarks/setup_cost.py --quick --out /tmp/setup             # smoke test

Cases:
- train: ``pddattn train --problem poisson2d --grid G --subdomains S --rank 4
  --levels 3 --steps 2 --test-size 4 --batch 4 --data probe`` (almost all set-up);
- pc: ``examples/diffusion2d_dmda.py -m M`` with DDAttentionPC built from the
  operator (boxes of 16 x 16 nodes, overlap 2), CG to a true 1e-8.

Writes setup_cost.json and setup_cost.md.
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
IMPORTS = "import torch, mpi4py.MPI, petsc4py.PETSc, pddattn.train, pddattn.petsc"


def _env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", PYTHONPATH=str(ROOT))
    return env


def measure(ranks, command):
    """(peak KB of every rank, wall seconds, stdout) of one mpirun.

    Each rank's /usr/bin/time writes its own file (ranks' stderr lines can interleave in one pipe).
    """
    import shlex
    import tempfile
    timer = shutil.which("time") or "/usr/bin/time"
    with tempfile.TemporaryDirectory() as folder:
        inner = " ".join(shlex.quote(a) for a in [sys.executable, *command])
        wrapped = f'{timer} -f "pddattn-peak %M %e" -o {folder}/peak.$OMPI_COMM_WORLD_RANK {inner}'
        cmd = ["mpirun", "--oversubscribe", "-n", str(ranks), "sh", "-c", wrapped]
        p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} on {ranks} ranks failed:\n{p.stderr[-2000:]}")
        text = "".join(Path(f).read_text() for f in sorted(Path(folder).glob("peak.*")))
    peaks = [(int(kb), float(s)) for kb, s in re.findall(r"pddattn-peak (\d+) ([0-9.]+)", text)]
    if len(peaks) != ranks:
        raise RuntimeError(f"{' '.join(command)} on {ranks} ranks: {len(peaks)} peak figures, not {ranks}")
    return [kb for kb, _ in peaks], max(s for _, s in peaks), p.stdout


def import_cost():
    kb, seconds, _ = measure(1, ["-c", IMPORTS])
    return kb[0] / 2**20, seconds


def train_command(grid, boxes):
    return ["-m", "pddattn", "train", "--problem", "poisson2d", "--grid", f"{grid}x{grid}", "--subdomains",
            f"{boxes}x{boxes}", "--rank", "4", "--levels", "3", "--steps", "2", "--test-size", "4", "--batch", "4",
            "--data", "probe", "--out", "/tmp/pddattn-setup-cost", "--overwrite"]


def pc_command(grid, boxes):
    return ["examples/diffusion2d_dmda.py", "-m", str(grid), "-ksp_type", "cg", "-ksp_norm_type", "unpreconditioned",
            "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains",
            f"{boxes}x{boxes}", "-pddattn_overlap", "2"]


def run(cases, ranks):
    base_gb, base_s = import_cost()
    rows = []
    for kind, grid in cases:
        boxes = (grid + 1) // 16
        command = train_command(grid, boxes) if kind == "train" else pc_command(grid, boxes)
        for P in ranks:
            kb, wall, out = measure(P, command)
            gb = [k / 2**20 for k in kb]
            rows.append({"case": kind, "grid": grid, "boxes": boxes, "ranks": P, "peak_gb": gb, "wall_s": wall,
                         "above_import_gb": [g - base_gb for g in gb], "output": out.strip().splitlines()[-1:]})
            print(f"{kind} {grid}^2 P={P}: peak {min(gb):.2f}-{max(gb):.2f} GB, wall {wall:.1f} s", flush=True)
    return {"import_gb": base_gb, "import_s": base_s, "rows": rows}


def markdown(results):
    base = results["import_gb"]
    lines = [f"Importing python, torch, mpi4py, petsc4py and pddattn alone: {base:.2f} GB, "
             f"{results['import_s']:.1f} s. 'Above import' subtracts it; ratios are to 1 rank's, "
             "from one run of this benchmark.", "",
             "| case | grid | boxes | ranks | peak per rank GB | above import GB | ratio (max rank) | wall s | "
             "wall ratio |", "|---|---|---|---|---|---|---|---|---|"]
    first = {}
    for r in results["rows"]:
        key = (r["case"], r["grid"])
        above = max(r["above_import_gb"])
        first.setdefault(key, (above, r["wall_s"]))
        a1, w1 = first[key]
        lines.append(f"| {r['case']} | {r['grid']}^2 | {r['boxes']}x{r['boxes']} | {r['ranks']} | "
                     f"{min(r['peak_gb']):.2f}-{max(r['peak_gb']):.2f} | "
                     f"{min(r['above_import_gb']):.2f}-{above:.2f} | {above / a1:.2f} | {r['wall_s']:.1f} | "
                     f"{r['wall_s'] / w1:.2f} |")
    lines += ["", "Weak scaling (the same share per rank: 511^2 on 1 rank against 1023^2 on 4, 4x the unknowns on 4x "
              "the ranks):", "", "| case | 1 rank at 511^2: above import GB, wall s | 4 ranks at 1023^2: above import "
              "GB (max rank), wall s | memory ratio | wall ratio |", "|---|---|---|---|---|"]
    cell = {(r["case"], r["grid"], r["ranks"]): r for r in results["rows"]}
    for case in ("train", "pc"):
        one, four = cell.get((case, 511, 1)), cell.get((case, 1023, 4))
        if one and four:
            a1, a4 = max(one["above_import_gb"]), max(four["above_import_gb"])
            lines.append(f"| {case} | {a1:.2f}, {one['wall_s']:.1f} | {a4:.2f}, {four['wall_s']:.1f} | {a4 / a1:.2f} | "
                         f"{four['wall_s'] / one['wall_s']:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="small grids, 1 and 2 ranks (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        cases, ranks = [("train", 127), ("pc", 63)], [1, 2]
    else:
        cases, ranks = [("train", 511), ("train", 1023), ("pc", 511), ("pc", 1023)], [1, 2, 4]
    results = run(cases, ranks)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "setup_cost.json").write_text(json.dumps(results, indent=1))
    (args.out / "setup_cost.md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
