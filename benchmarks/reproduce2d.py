"""Reproduction beyond 1D: DD attention against the global baseline on 2D diffusion problems.

Problems: poisson2d (Fourier data, all modes) and diffusion2d with smooth:100, jump:1e4 and
lognormal:1 coefficients (solve data: white f, u = A^-1 f by one sparse factorization), at
grids 63^2 (default) and 127^2. Global models at several ranks (lr 0.01), DD attention in box layouts with q1 and harmonic coarse spaces; every run on the
same data and step budget. Each global row carries its *capacity* (best rank-r operator),
each DD row its *Schwarz start* (untrained truncated two-level Schwarz). The bar: the best
DD model with at most 1/5 of the best global model's parameters has >= 10x lower test error
than that global model's capacity.

    python benchmarks/reproduce2d.py --out benchmarks/results         # 63^2: about 20 min on 2 cores
    python benchmarks/reproduce2d.py --grids 63,127 --out benchmarks/results   # with 127^2: about 1.5 h
    python benchmarks/reproduce2d.py --grids 127 --merge --out benchmarks/results  # add 127^2 to 63^2
    python benchmarks/reproduce2d.py --quick --out /tmp/r2             # smoke test

Writes reproduce2d.json, reproduce2d.md and reproduce2d.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_global, headline, reference_text, run_one, write_report  # noqa: E402
from pddattn.models import problem_of  # noqa: E402
from pddattn.train import TrainConfig  # noqa: E402

PROBLEMS = [("poisson2d", "const", "fourier"), ("diffusion2d", "smooth:100", "solve"),
            ("diffusion2d", "jump:1e4", "solve"), ("diffusion2d", "lognormal:1", "solve")]
GLOBAL_RANKS = (16, 64, 256)
GLOBAL_LRS = (0.01,)  # one lr: the bar is against the capacity, which no tuning can beat
# (boxes per side, delta, local r, coarse space)
DD_CONFIGS = {63: [(4, 2, 4, "q1"), (8, 2, 4, "q1"), (8, 2, 4, "harmonic")],
              127: [(8, 2, 4, "q1"), (16, 2, 4, "q1"), (16, 2, 4, "harmonic"), (16, 2, 8, "q1")]}


def describe(r):
    c = r["config"]
    if c["model"] == "global":
        return f"global r={c['rank']} (lr {c['lr']})"
    return f"DD {c['subdomains']} delta={c['overlap']} r={c['rank']} {c['coarse_space']}"


def markdown(results):
    lines = ["| problem | grid | best global | params | error | capacity | best DD (<= 1/5 params) | params | error | "
             "Schwarz start | vs trained | vs capacity | bar |", "|" + "---|" * 13]
    for key, h in results["headline"].items():
        family, grid = key.split("|")
        g, d = h["global"], h["dd"]
        if d is None:
            lines.append(f"| {family} | {grid} | {describe(g)} | {g['parameters']:,} | {g['test_error']:.2e} | "
                         f"{g['capacity']:.2e} | none small enough | | | | | | missed |")
            continue
        lines.append(f"| {family} | {grid} | {describe(g)} | {g['parameters']:,} | {g['test_error']:.2e} | "
                     f"{g['capacity']:.2e} | {describe(d)} | {d['parameters']:,} | {d['test_error']:.2e} | "
                     f"{d['schwarz_start']:.2e} | {h['ratio_trained']:.1f}x | {h['ratio_capacity']:.2f}x | "
                     f"{'holds' if h['holds'] else 'missed'} |")
    lines += ["", "All runs:", "", "| problem | grid | model | params | test error | reference | seconds |",
              "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['key']} | {r['config']['grid']} | {describe(r)} | {r['parameters']:,} | "
                     f"{r['test_error']:.2e} | {reference_text(r)} | {r['time']:.1f} |")
    return "\n".join(lines)


def plot(results, path):
    from pddattn.compare import pyplot
    plt = pyplot()
    if plt is None:
        return
    keys = list(results["headline"])
    grids = list(dict.fromkeys(k.split("|")[1] for k in keys))      # one row of panels per grid
    cols = max(sum(k.endswith("|" + g) for k in keys) for g in grids)
    fig, axes = plt.subplots(len(grids), cols, figsize=(4 * cols, 3.6 * len(grids)), constrained_layout=True,
                             squeeze=False)
    places = []
    for row, g in enumerate(grids):
        places += [(axes[row][col], k) for col, k in enumerate(k for k in keys if k.endswith("|" + g))]
    for ax, key in places:
        runs = [r for r in results["runs"] if f"{r['key']}|{r['config']['grid']}" == key]
        g = [r for r in runs if r["model"] == "global"]
        d = [r for r in runs if r["model"] == "dd"]
        ax.loglog([r["parameters"] for r in g], [r["test_error"] for r in g], "o-", label="global (trained)")
        ax.loglog([r["parameters"] for r in g], [r["capacity"] for r in g], "o--", label="global capacity")
        ax.loglog([r["parameters"] for r in d], [r["test_error"] for r in d], "s", label="DD (trained)")
        ax.loglog([r["parameters"] for r in d], [r["schwarz_start"] for r in d], "x", label="DD Schwarz start")
        ax.set_title(key.replace("|", " "), fontsize=9)
        ax.set_xlabel("parameters")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # log-axis minor labels collide at 2e5..8e6
        ax.grid(True, which="both", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("mean relative L2 test error")
    axes[0][0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--grids", default="63", help="comma-separated sides, e.g. 63,127 (127 takes about 4x longer)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs of other grids already in OUT/reproduce2d.json (add 127 to a 63 run)")
    args = p.parse_args(argv)
    grids = [int(g) for g in args.grids.split(",")]
    steps, ranks, lrs, problems = args.steps, GLOBAL_RANKS, GLOBAL_LRS, PROBLEMS
    if args.quick:
        grids, steps, ranks, lrs, problems = [31], 40, (16,), (0.01,), PROBLEMS[:2]
        DD_CONFIGS[31] = [(4, 2, 4, "q1")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"steps": steps, "batch": 64, "runs": [], "headline": {}}
    if args.merge and (out / "reproduce2d.json").exists():
        old = json.loads((out / "reproduce2d.json").read_text())
        keep = [f"{g}x{g}" for g in grids]
        results["runs"] = [r for r in old["runs"] if r["config"]["grid"] not in keep]
        results["headline"] = {k: h for k, h in old["headline"].items() if k.split("|")[1] not in keep}
    for side in grids:
        for family, coefficient, data in problems:
            base = TrainConfig.of(problem=family, grid=f"{side}x{side}", coefficient=coefficient, data=data,
                               steps=steps, eval_every=max(steps // 20, 1), dtype="float32", test_size=128,
                               checkpoint_every=10**9)
            problem = problem_of(base.to_dict())
            key = family if coefficient == "const" else f"{family} {coefficient}"
            runs = [best_global(base, problem, r, lrs) for r in ranks]
            for (B, delta, r, coarse) in DD_CONFIGS[side]:
                runs.append(run_one(base, problem, model="dd", subdomains=f"{B}x{B}", overlap=delta, rank=r,
                                    coarse_space=coarse))
            for r in runs:
                r["key"] = key
                ref = r.get("capacity", r.get("schwarz_start"))
                print(f"{key:24s} {side}^2 {describe(r):36s} params={r['parameters']:>9,} "
                      f"error={r['test_error']:.2e} ref={ref:.2e} time={r['time']:.1f}s", flush=True)
            results["runs"] += runs
            results["headline"][f"{key}|{side}x{side}"] = headline(runs)
            (out / "reproduce2d.json").write_text(json.dumps(results, indent=1))
    write_report(out, "reproduce2d", results, markdown, plot)


if __name__ == "__main__":
    main()
