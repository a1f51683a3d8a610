"""DD attention, the global low-rank model and the FNO at equal parameter budgets.

    python benchmarks/fno_compare.py --out benchmarks/results            # every cell (hours on 2 cores)
    python benchmarks/fno_compare.py --out benchmarks/results --only laplace1d,diffusion1d --budgets 20000

For each problem and budget (about 20k, 100k, 500k parameters) each model
gets the configuration whose parameter count is closest to the budget: DD
attention (subdomains and local rank; full coarse rank), from the same random
start as the others (``dd``) and from its Schwarz start (``dd-schwarz``: it
uses A, which the FNO cannot), the global model
(rank r = budget / 2n), the FNO (width and modes, 4 layers, preferring the
usual 16 modes). All three train on the same batches and test set (same
seed), the same number of steps and batch; the global model and the FNO
with the learning rate chosen by a short sweep (a quarter of the steps) at
the middle budget of the first problem of each dimension, DD at its
default. Every cell is written as it finishes (results JSON, resumable);
cells that are not run say why. Output: fno_compare.json, .md and one PNG
per problem (test error against training seconds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pddattn.capacity import global_capacity, schwarz_start_error  # noqa: E402
from pddattn.compare import THRESHOLDS, pyplot, reached  # noqa: E402
from pddattn.train import TrainConfig, train  # noqa: E402

PROBLEMS = {
    "laplace1d": dict(problem="laplace1d", n=1023),
    "diffusion1d-jump": dict(problem="diffusion1d", n=1023, coefficient="jump:1e4"),
    "poisson2d-63": dict(problem="poisson2d", grid="63x63"),
    "poisson2d-127": dict(problem="poisson2d", grid="127x127"),
    "diffusion2d-jump-63": dict(problem="diffusion2d", grid="63x63", coefficient="jump:1e4"),
    "diffusion2d-jump-127": dict(problem="diffusion2d", grid="127x127", coefficient="jump:1e4"),
    "diffusion2d-lognormal-63": dict(problem="diffusion2d", grid="63x63", coefficient="lognormal:1"),
    "diffusion2d-lognormal-127": dict(problem="diffusion2d", grid="127x127", coefficient="lognormal:1"),
}
BUDGETS = (20_000, 100_000, 500_000)
FNO_LRS, GLOBAL_LRS = (1e-3, 3e-3, 1e-2), (3e-3, 1e-2, 3e-2)


def dd_choice(base, budget):
    """(subdomains, rank, parameters) of the DD model closest to ``budget`` (more subdomains on ties)."""
    from pddattn.models import decomposition_spec, problem_of
    from pddattn.decomposition import decomposition_from_spec
    problem = problem_of(base.to_dict())
    candidates = (64, 32, 16, 8, 4) if problem.dim == 1 else ("16x16", "8x8", "4x4", "2x2")
    best = None
    for N in candidates:
        try:
            d = decomposition_from_spec(decomposition_spec({**base.to_dict(), "subdomains": N}, problem), problem)
        except ValueError:
            continue
        total, coarse = int(d.sizes.sum()), 2 * d.coarse_size ** 2
        r = max(1, min(int(d.sizes.max()), round((budget - coarse) / (2 * total))))
        params = 2 * total * r + coarse
        score = abs(math.log(params / budget))
        if best is None or score < best[0] - 0.05:
            best = (score, N, r, params)
    return best[1:]


def fno_choice(grid, budget):
    """(width, modes, parameters) of the FNO closest to ``budget``, preferring 16 modes."""
    from pddattn.fno import FNOOperator
    best = None
    for m in (16, 12, 24, 8):
        for w in (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96):
            params = FNOOperator(grid, w, m).num_parameters()
            score = abs(math.log(params / budget)) + 0.5 * abs(math.log(m / 16))
            if best is None or score < best[0]:
                best = (score, w, m, params)
    return best[1:]


def run_cell(base, model, problem, **changes):
    """Train one model; its error, parameters, seconds, reference and history."""
    cfg = dataclasses.replace(base, model=model, **changes)
    wall = time.perf_counter()
    trained, summary = train(cfg, problem=problem)
    row = {k: summary[k] for k in ("parameters", "steps", "time", "test_error", "history")}
    row["wall"] = time.perf_counter() - wall
    for t in THRESHOLDS:
        row[f"reach_{t:g}"] = dict(zip(("step", "time"), reached(summary["history"], t)))
    if model == "global":
        row["capacity"], row["capacity_kind"] = global_capacity(cfg, problem, trained.train_data)
    if model == "dd":
        row["schwarz_start"] = schwarz_start_error(cfg, problem, trained.train_data)
    row["config"] = {k: v for k, v in changes.items()}
    return row


def sweep(base, problem, budget, grid, steps):
    """The global model's and the FNO's lr from short runs at ``budget``."""
    r = max(1, round(budget / (2 * problem.n)))
    w, m, _ = fno_choice(grid, budget)
    out = {}
    for model, lrs, extra in (("global", GLOBAL_LRS, dict(rank=r)), ("fno", FNO_LRS, dict(fno_width=w, fno_modes=m))):
        tries = {lr: run_cell(base, model, problem, steps=steps, lr=lr, **extra)["test_error"] for lr in lrs}
        out[model] = {"lr": min(tries, key=tries.get), "tries": {f"{k:g}": v for k, v in tries.items()}}
        print(f"  sweep {model}: {out[model]}", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--only", help="comma-separated problem names (default all)")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--steps-1d", type=int, default=1000)
    p.add_argument("--steps-2d", type=int, default=500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--skip-fno-above", type=int, default=5000,
                   help="grids with more nodes than this skip the FNO (CPU time; the step time is measured)")
    p.add_argument("--report", action="store_true", help="only write the table and plots from the JSON so far")
    p.add_argument("--redo-skipped", action="store_true", help="run the cells skipped before (with a larger "
                                                                "--skip-fno-above)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fno_compare.json"
    results = json.loads(path.read_text()) if path.exists() else {"cells": {}, "sweeps": {}}
    if not args.report:
        run_cells(args, results, path)
    (out / "fno_compare.md").write_text(table(results))
    plots(results, out)
    print(table(results))


def run_cells(args, results, path):
    """Every missing cell of the selected problems and budgets, written to ``path`` as it finishes."""
    names = args.only.split(",") if args.only else list(PROBLEMS)
    budgets = [int(b) for b in args.budgets.split(",")]
    for name in names:
        spec = PROBLEMS[name]
        dim = 2 if "grid" in spec else 1
        steps = args.steps_2d if dim == 2 else args.steps_1d
        base = TrainConfig(**spec, subdomains="4x4" if dim == 2 else 32, steps=steps, batch=args.batch, eval_every=max(steps // 20, 1), test_size=256,
                           warmup=max(steps // 20, 1), dtype="float32", seed=0)
        problem, _, _ = base.validate().build()
        grid = tuple(problem.grid)
        key_sweep = f"{dim}d"
        if key_sweep not in results["sweeps"]:
            print(f"{name}: lr sweep ({steps // 4} steps)", flush=True)
            results["sweeps"][key_sweep] = sweep(base, problem, budgets[len(budgets) // 2], grid, steps // 4)
            results["sweeps"][key_sweep]["on"] = name
            path.write_text(json.dumps(results, indent=1))
        lrs = results["sweeps"][key_sweep]
        for budget in budgets:
            for model in ("dd", "dd-schwarz", "global", "fno"):
                key = f"{name}/{budget}/{model}"
                if key in results["cells"] and not (args.redo_skipped and "skipped" in results["cells"][key]):
                    continue
                if model.startswith("dd"):
                    N, r, _ = dd_choice(base, budget)
                    changes = dict(subdomains=N, rank=r, **({"init": "schwarz"} if model == "dd-schwarz" else {}))
                elif model == "global":
                    changes = dict(rank=max(1, round(budget / (2 * problem.n))), lr=lrs["global"]["lr"])
                else:
                    w, m, _ = fno_choice(grid, budget)
                    changes = dict(fno_width=w, fno_modes=m, lr=lrs["fno"]["lr"])
                if model == "fno" and problem.n > args.skip_fno_above:
                    probe = run_cell(base, model, problem, steps=3, eval_every=3, warmup=1, **changes)
                    per_step = probe["time"] / 3
                    results["cells"][key] = {"skipped": f"{per_step:.2f} s per step measured here: "
                                                        f"{per_step * base.steps / 60:.0f} min for {base.steps} "
                                                        f"steps on this 2-core CPU", "config": changes}
                else:
                    print(f"{key}: {changes}", flush=True)
                    results["cells"][key] = run_cell(base, model.split("-")[0], problem, **changes)
                    c = results["cells"][key]
                    print(f"  {c['parameters']:,} parameters, test error {c['test_error']:.3e}, {c['time']:.1f} s",
                          flush=True)
                path.write_text(json.dumps(results, indent=1))


def table(results):
    lines = ["| problem | budget | model | configuration | parameters | steps | test error | reference | s to 1e-1 | "
             "s to 1e-2 | training s |", "|" + "---|" * 11]
    for key, c in results["cells"].items():
        name, budget, model = key.split("/")
        conf = ", ".join(f"{k}={v}" for k, v in c.get("config", {}).items())
        if "skipped" in c:
            lines.append(f"| {name} | {int(budget):,} | {model} | {conf} | - | - | not run | {c['skipped']} | - | - | - |")
            continue
        ref = (f"capacity {c['capacity']:.2e}" if "capacity" in c else
               f"Schwarz start {c['schwarz_start']:.2e}" if "schwarz_start" in c else "-")
        reach = [c[f"reach_{t:g}"]["time"] for t in (1e-1, 1e-2)]
        cells = ["-" if t is None else f"{t:.1f}" for t in reach]
        lines.append(f"| {name} | {int(budget):,} | {model} | {conf} | {c['parameters']:,} | {c['steps']} | "
                     f"{c['test_error']:.2e} | "
                     f"{ref} | {cells[0]} | {cells[1]} | {c['time']:.1f} |")
    sweeps = [f"- {d}: lr sweep on {s['on']}: global {s['global']['tries']} -> {s['global']['lr']:g}; "
              f"FNO {s['fno']['tries']} -> {s['fno']['lr']:g}" for d, s in results["sweeps"].items()]
    return "\n".join(lines + [""] + sweeps) + "\n"


def plots(results, out):
    plt = pyplot()
    if plt is None:
        return
    names = dict.fromkeys(k.split("/")[0] for k in results["cells"])
    colours = {"dd": "tab:orange", "dd-schwarz": "tab:red", "global": "tab:blue", "fno": "tab:green"}
    for name in names:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
        for key, c in results["cells"].items():
            n, budget, model = key.split("/")
            if n != name or "history" not in c:
                continue
            h = [r for r in c["history"] if r["time"] > 0]  # log time axis: the evaluation at step 0 is off it
            ls = {20_000: ":", 100_000: "--", 500_000: "-"}.get(int(budget), "-")
            ax.loglog([r["time"] for r in h], [r["test_error"] for r in h], ls, color=colours[model],
                      label=f"{model} {c['parameters']:,}")
        ax.set_xlabel("training wall time [s] (log)")
        ax.set_ylabel("mean relative L2 test error")
        ax.set_title(f"{name}: DD attention, global, FNO at equal parameters")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
        fig.savefig(out / f"fno_compare_{name}.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
