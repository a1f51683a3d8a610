"""Per-rank set-up memory of the PC from 1 to 65,536 ranks, on paper, from counted bytes.

Measured first (1 rank, diffusion2d jump:1e4 on a DMDA, 16x16-node boxes,
overlap 2, harmonic): the bytes of each part of a rank's share
(``DecompositionShare.nbytes``), the stored entries of the factorizations
(PETSc's ``nz_used``), the coarse size n_0, nnz(A_0) and the set-up seconds
at 255^2, 511^2 and 1023^2. Then projected to P ranks in weak scaling, a
fixed share of 256 subdomains (65,536 unknowns) per rank, so N = 256 P:

- distributed parts (index sets, weights, rows of A and of Phi, the block
  factor, the plan) are the measured per-subdomain bytes times 256: constant;
- replicated parts grow with N: A_0 (n_0 = c N, nnz(A_0) = a n_0, both
  measured), its Cholesky factor (nested dissection on a 2D-like graph:
  nnz = b n_0 log2 n_0, b fitted to the three sizes), the holder of every
  subdomain (8 N bytes) and the allgathers of A_0's triplets (24 nnz) and of
  the interface groups' first nodes (8 n_0);
- set-up seconds: the distributed part measured at 255^2 (constant) plus the
  top factorization, n_0^1.5 flops for nested dissection in 2D, scaled from
  its measured seconds at 1023^2. Network time is not modelled.

Next to it "before": the PC as it was (the whole operator gathered and the
whole decomposition and Phi on every rank), from the same counts. And the
multilevel PC with its coarse levels built per rank (tiles): level 1's
bytes per coarse row and its shrink factor measured with -pddattn_levels 3,
levels added until the replicated top has at most 4,096 rows.

    python benchmarks/setup_projection.py --out benchmarks/results      # about a minute

Writes setup_projection.json and setup_projection.md.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
PER_RANK = 256  # subdomains per rank in the weak-scaling projection
TOP = 4096  # largest replicated top of the multilevel projection


def measure(grid):
    from pc_cost import dd_pc
    problem, A, pc = dd_pc(grid)
    t = time.perf_counter()
    pc.setUp()
    seconds = time.perf_counter() - t
    model = pc.getPythonContext().model
    share = model.decomposition
    top = model.parametrization.top_solve.lu
    t = time.perf_counter()
    from pddattn.exact import SparseSolve
    SparseSolve(share.A0)
    top_seconds = time.perf_counter() - t
    row = {"grid": grid, "n": problem.n, "N": share.N, "n0": share.coarse_size, "A0_nnz": int(share.A0.nnz),
           "top_factor_nnz": int(top.nnz), "local_factor_nnz": int(model.parametrization.local_solve.solve.lu.nnz),
           "share_bytes": int(share.nbytes()), "A0_bytes": int(12 * share.A0.nnz + 8 * share.coarse_size),
           "rows_held": int(share.rows_held), "A_nnz": int(A.getInfo()["nz_used"]), "phi_nnz": int(share.phi.nnz),
           "stacked": int(share.sizes.sum()), "setup_s": seconds, "top_factor_s": top_seconds}
    pc.destroy()
    row.update(_three_levels(grid))
    return row


def _three_levels(grid):
    """The PC with -pddattn_levels 3 (coarse subdomains of 24 rows): level 1's bytes, rows and set-up."""
    from petsc4py import PETSc
    from pc_cost import dd_pc
    PETSc.Options()["pddattn_levels"] = "3"
    try:
        _, _, pc = dd_pc(grid)
        t = time.perf_counter()
        pc.setUp()
        seconds = time.perf_counter() - t
    finally:
        PETSc.Options().delValue("pddattn_levels")
    level = pc.getPythonContext().model.next_level
    d = level.decomposition
    index = sum(a.nbytes for a in (*d.cores, *d.subdomains)) + 8 * int(d.sizes.sum())  # and the weights
    A1 = level.problem.A
    out = {"n1": d.n, "N1": d.N, "n2": d.coarse_size, "level1_bytes": int(index + 12 * (d.phi.nnz + A1.nnz)
                                                                           + 12 * level.parametrization.local_solve.solve.lu.nnz),
           "levels3_setup_s": seconds}
    pc.destroy()
    return out


def fit(rows):
    """Per-unit constants of the model from the measured rows."""
    last = rows[-1]
    n0 = np.array([r["n0"] for r in rows], dtype=float)
    top = np.array([r["top_factor_nnz"] for r in rows], dtype=float)
    return {"n0_per_N": last["n0"] / last["N"], "A0_nnz_per_n0": last["A0_nnz"] / last["n0"],
            "top_fill": float(np.mean(top / (n0 * np.log2(n0)))),
            # distributed bytes per subdomain: the share without A_0, the block factor, A's held rows
            "distributed_per_subdomain": (last["share_bytes"] - last["A0_bytes"] + 12 * last["local_factor_nnz"]
                                          + 12 * last["A_nnz"] * last["rows_held"] / last["n"]) / last["N"],
            "phi_nnz_per_node": last["phi_nnz"] / last["n"], "A_nnz_per_node": last["A_nnz"] / last["n"],
            "stacked_per_subdomain": last["stacked"] / last["N"],
            "local_factor_per_subdomain": last["local_factor_nnz"] / last["N"],
            "distributed_s": rows[0]["setup_s"] - rows[0]["top_factor_s"],
            "level_bytes_per_row": last["level1_bytes"] / last["n1"], "level_shrink": last["n2"] / last["n1"],
            "level_rows_per_subdomain": last["n1"] / last["N1"],
            "levels3_distributed_s": rows[0]["levels3_setup_s"],
            "top_s_at": (last["n0"], last["top_factor_s"])}


def project(c, P):
    N = PER_RANK * P
    n = 256 * N  # 16 x 16 nodes per core
    n0 = c["n0_per_N"] * N
    a0 = c["A0_nnz_per_n0"] * n0
    top = c["top_fill"] * n0 * np.log2(max(n0, 2))
    replicated = 12 * a0 + 8 * n0 + 12 * top + 8 * N + 24 * a0 + 8 * n0
    now = c["distributed_per_subdomain"] * PER_RANK + replicated
    # before: A gathered (12 B an entry + 8 B a row), the whole decomposition (index sets, weights, padded
    # copies: 4 x 8 B per stacked entry, cores 8 B a node), the whole Phi, plus this rank's parts as now
    before = (12 * c["A_nnz_per_node"] * n + 8 * n + 32 * c["stacked_per_subdomain"] * N + 8 * n
              + 12 * c["phi_nnz_per_node"] * n + now)
    n0_ref, t_ref = c["top_s_at"]
    seconds = c["distributed_s"] + t_ref * (n0 / n0_ref) ** 1.5
    return {"P": P, "N": N, "n": n, "n0": n0, "now_gb": now / 1e9, "replicated_gb": replicated / 1e9,
            "before_gb": before / 1e9, "setup_s": seconds}


def project_levels(c, P, top=TOP):
    """Per rank with coarse levels built per rank (parallel/coarse_level.py) down to a top of <= ``top`` rows.

    Level 0 as in :func:`project` without its replicated A_0; each coarse
    level l holds n_l / P rows per rank at the measured bytes per row; what
    stays replicated per level is the anchors and tile of every row of the
    level above (16 n_(l-1) bytes) and the holder and size of every tile
    (16 N_l); the top, bounded, is A_top and its factor as in the two-level model.
    """
    N = PER_RANK * P
    n_l = c["n0_per_N"] * N
    distributed = c["distributed_per_subdomain"] * PER_RANK
    replicated, levels = 0.0, 2
    while n_l > top:
        distributed += c["level_bytes_per_row"] * n_l / P
        replicated += 16 * n_l + 16 * n_l / c["level_rows_per_subdomain"]
        n_l *= c["level_shrink"]
        levels += 1
    a_top = c["A0_nnz_per_n0"] * n_l
    replicated += 12 * a_top + 8 * n_l + 12 * c["top_fill"] * n_l * np.log2(max(n_l, 2)) + 24 * a_top
    return {"P": P, "levels": levels, "top": n_l, "per_rank_gb": (distributed + replicated) / 1e9,
            "replicated_gb": replicated / 1e9}


def markdown(rows, c, projected, multilevel):
    out = ["Measured (1 rank; diffusion2d jump:1e4, 16x16-node boxes, overlap 2, harmonic):", "",
           "| grid | N | n_0 | nnz(A_0) | top factor nnz | block factor nnz | share MB | set-up s | top factor s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['grid']}^2 | {r['N']:,} | {r['n0']:,} | {r['A0_nnz']:,} | {r['top_factor_nnz']:,} | "
                   f"{r['local_factor_nnz']:,} | {r['share_bytes'] / 1e6:.1f} | {r['setup_s']:.2f} | "
                   f"{r['top_factor_s']:.3f} |")
    out += ["", f"Fitted: n_0 = {c['n0_per_N']:.2f} N, nnz(A_0) = {c['A0_nnz_per_n0']:.1f} n_0, top factor "
            f"{c['top_fill']:.2f} n_0 log2 n_0 entries, {c['distributed_per_subdomain'] / 1e3:.0f} kB of distributed "
            f"set-up per subdomain.", "",
            f"Projected, weak scaling at {PER_RANK} subdomains (65,536 unknowns) per rank:", "",
            "| ranks | unknowns | n_0 | per rank now GB | of it replicated GB | per rank before GB | set-up s now |",
            "|---|---|---|---|---|---|---|"]
    for p in projected:
        out.append(f"| {p['P']:,} | {p['n']:,.0f} | {p['n0']:,.0f} | {p['now_gb']:.3f} | {p['replicated_gb']:.3f} | "
                   f"{p['before_gb']:.2f} | {p['setup_s']:.1f} |")
    out += ["", f"With the coarse levels built per rank (tiles, coarse subdomains of "
            f"{c['level_rows_per_subdomain']:.0f} rows, measured with -pddattn_levels 3: "
            f"{c['level_bytes_per_row']:.0f} B per coarse row, each level {c['level_shrink']:.3f} of the one above), "
            f"levels added until the top has at most {TOP:,} rows:", "",
            "| ranks | levels | top rows | per rank GB | of it replicated GB | two levels GB |", "|---|---|---|---|---|---|"]
    for m, p in zip(multilevel, projected):
        out.append(f"| {m['P']:,} | {m['levels']} | {m['top']:,.0f} | {m['per_rank_gb']:.3f} | "
                   f"{m['replicated_gb']:.3f} | {p['now_gb']:.3f} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--grids", default="255,511,1023")
    args = parser.parse_args()
    rows = [measure(int(g)) for g in args.grids.split(",")]
    c = fit(rows)
    projected = [project(c, 4 ** k) for k in range(9)]
    multilevel = [project_levels(c, 4 ** k) for k in range(9)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "setup_projection.json").write_text(json.dumps({"measured": rows, "fit": c, "projected": projected,
                                                                "multilevel": multilevel},
                                                               indent=1))
    text = markdown(rows, c, projected, multilevel)
    (args.out / "setup_projection.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
