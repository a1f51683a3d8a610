"""DDAttentionPC's set-up on new values of its Mat (same pattern) against its first set-up.

A user who calls KSPSetOperators again with new values (a time step, a
Newton step, a new coefficient field) pays the PC's second set-up. Cases,
at 511^2 diffusion2d lognormal:1 (first seed 1, then the values of seed 2
copied into the same Mat), one rank, ``OMP_NUM_THREADS=1``:

- rows: boxes of 16x16 nodes on the DMDA, overlap 2, harmonic coarse space:
  the set-up from each rank's rows (the default path), whose share takes the
  new values on its structure and whose factorizations are redone numerically;
- nicolaides (named ``gathered`` until a share built this space): 1024 algebraic
  row blocks, overlap 2, Nicolaides coarse space: the gathered path until a
  share built the Nicolaides space (its Hierarchy took the new values by
  hierarchy.update), now from each rank's rows like the rows case;
- rows3: the rows case with three levels (coarse subdomains of 24 rows):
  under mpirun each rank holds tiles of the coarse level, whose shares take
  the new values on their structure too (Hierarchy.follow_share); on one
  rank the coarse level is built whole from the summed A_1, anew.

Under ``mpirun -n P`` the Mat, the DMDA and the PC are on COMM_WORLD and
each time is the slowest rank's.

Each case runs ``--repeat`` times in this process; the medians are printed
and written. Runs on any pddattn tree (``PYTHONPATH=tree``): only the public
PC is used, so the last release can be measured the same way.

    python benchmarks/pc_refactor.py --out benchmarks/results    # about 2 minutes
    mpirun -n 2 python benchmarks/pc_refactor.py --cases rows rows3 --name pc_refactor_np2
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

import petsc4py  # noqa: E402

petsc4py.init([])
from petsc4py import PETSc  # noqa: E402

from pddattn.petsc import DDAttentionPC, petsc_matrix  # noqa: E402
from pddattn.problems import make_problem  # noqa: E402

CASES = {"rows": {"subdomains": "32x32", "overlap": 2, "coarse": "harmonic"},
         "nicolaides": {"subdomains": "1024", "overlap": 2, "coarse": "nicolaides"},
         "rows3": {"subdomains": "32x32", "overlap": 2, "coarse": "harmonic", "levels": 3}}
COMM = PETSc.COMM_WORLD


def slowest(seconds):
    """The slowest rank's seconds (the set-up ends when every rank's does)."""
    if COMM.getSize() == 1:
        return seconds
    from mpi4py import MPI
    return COMM.tompi4py().allreduce(seconds, op=MPI.MAX)


def measure(name, side, first, second):
    """(first set-up s, set-up on new values s, the PC's counts of built and refactored set-ups)."""
    options = CASES[name]
    A, B = petsc_matrix(first, COMM), petsc_matrix(second, COMM)
    prefix = f"refactor_{name}_"
    for key, value in options.items():
        PETSc.Options(prefix)[f"pddattn_{key}"] = value
    pc = PETSc.PC().create(comm=COMM)
    pc.setOptionsPrefix(prefix)
    pc.setOperators(A)
    pc.setType("python")
    context = DDAttentionPC()
    pc.setPythonContext(context)
    if name.startswith("rows"):
        pc.setDM(PETSc.DMDA().create([side, side], stencil_width=1, comm=COMM))
    COMM.barrier()
    t0 = time.perf_counter()
    pc.setUp()
    built = slowest(time.perf_counter() - t0)
    A.zeroEntries()
    A.axpy(1.0, B, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
    COMM.barrier()
    t0 = time.perf_counter()
    pc.setUp()
    again = slowest(time.perf_counter() - t0)
    counts = dict(context.setups)
    pc.destroy()
    for M in (A, B):
        M.destroy()
    return built, again, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--side", type=int, default=511)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--name", default="pc_refactor", help="file name of the results (json and md)")
    parser.add_argument("--cases", nargs="+", default=["rows", "nicolaides"], choices=sorted(CASES))
    args = parser.parse_args(argv)
    first, second = (make_problem("diffusion2d", (args.side, args.side), "lognormal:1", seed=s).A for s in (1, 2))
    rows = []
    for name in args.cases:
        runs = [measure(name, args.side, first, second) for _ in range(args.repeat)]
        rows.append({"case": name, **CASES[name], "first_s": statistics.median(r[0] for r in runs),
                     "new_values_s": statistics.median(r[1] for r in runs), "setups": runs[-1][2]})
    lines = ["| case | ranks | options | first set-up s | set-up on new values s | new / first | set-ups |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {COMM.getSize()} | {r['subdomains']}, overlap {r['overlap']}, {r['coarse']}"
                     f"{', %d levels' % r['levels'] if 'levels' in r else ''} | {r['first_s']:.3f} | "
                     f"{r['new_values_s']:.3f} | {r['new_values_s'] / r['first_s']:.2f} | {r['setups']} |")
    if COMM.getRank():
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"side": args.side, "repeat": args.repeat, "ranks": COMM.getSize(), "rows": rows},
                                                      indent=1))
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
