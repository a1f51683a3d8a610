"""DD attention, the global low-rank model and the FNO at equal parameter budgets.

    python benchmarks/fno_compare.py --out benchmarks/results            # every cell (hours on 2 cores)
    python benchmarks/fno_compare.py --out benchmarks/results --only laplace1d,diffusion1d-jump --budgets 20000

For each problem and budget (about 20k, 100k, 500k parameters) each model
gets a configuration fixed by a rule, never by its test error: DD attention
(``pddattn.budget.dd_at_budget``: the finest decomposition with cores of about 16 nodes that
fits, overlap 1, symmetric factors, the coarse block up to half the budget,
local rank filling the rest up to full rank), from the same random start as
the others (``dd``) and from its Schwarz start (``dd-schwarz``: it uses A,
which the FNO cannot); the global model, symmetric as DD (Q Q^T, rank
budget / n); the FNO (width and modes nearest the budget, 4 layers,
preferring the usual 16 modes). All three train on the same batches and
test set (same seed), the same number of steps and batch; the global model
and the FNO with the learning rate chosen by a short sweep (a quarter of the
steps) at the middle budget of the first problem of each dimension, DD at
its default. Every cell is written as it finishes (results JSON,
resumable; ``--models`` runs a subset); cells that are not run say why.
The cells of the first rule (nearest parameter count, overlap 2, full
coarse rank, non-symmetric) stay in the JSON under ``rule1`` and in the
table's second part. Output: fno_compare.json, .md and one PNG per problem
(test error against training seconds).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pddattn.assembly import assemble  # noqa: E402
from pddattn.budget import dd_at_budget, fno_at_budget, global_at_budget  # noqa: E402
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


def run_cell(base, model, problem, **changes):
    """Train one model; its error, parameters, seconds, reference and history."""
    cfg = base.replace(model=model, **changes)
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
    r, _ = global_at_budget(problem.n, budget, symmetric=False)  # the sweep of the first rule, kept
    w, m, _ = fno_at_budget(grid, budget)
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
    p.add_argument("--models", default="dd,dd-schwarz,global,fno", help="comma-separated models to run")
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
    unknown = sorted(set(names) - set(PROBLEMS))
    if unknown:
        sys.exit(f"fno_compare: unknown problem(s) {', '.join(unknown)}; known: {', '.join(PROBLEMS)}")
    budgets = [int(b) for b in args.budgets.split(",")]
    models = args.models.split(",")
    for name in names:
        spec = PROBLEMS[name]
        dim = 2 if "grid" in spec else 1
        steps = args.steps_2d if dim == 2 else args.steps_1d
        base = TrainConfig.of(**spec, subdomains="4x4" if dim == 2 else 32, steps=steps, batch=args.batch, eval_every=max(steps // 20, 1), test_size=256,
                           warmup=max(steps // 20, 1), dtype="float32", seed=0)
        problem = assemble(base.validate()).problem
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
                if model not in models:
                    continue
                if model.startswith("dd"):
                    changes, _ = dd_at_budget(base, problem, budget)
                    changes.update({"init": "schwarz"} if model == "dd-schwarz" else {})
                elif model == "global":  # symmetric, as DD's factors: Q Q^T at rank budget / n
                    rank, _ = global_at_budget(problem.n, budget, symmetric=True)
                    changes = dict(rank=rank, symmetric=True, lr=lrs["global"]["lr"])
                else:
                    w, m, _ = fno_at_budget(grid, budget)
                    changes = dict(fno_width=w, fno_modes=m, lr=lrs["fno"]["lr"])
                if model == "fno" and problem.n > args.skip_fno_above:
                    probe = run_cell(base, model, problem, steps=3, eval_every=3, warmup=1, **changes)
                    per_step = probe["time"] / 3
                    results["cells"][key] = {"skipped": f"{per_step:.2f} s per step measured here: "
                                                        f"{per_step * base.optim.steps / 60:.0f} min for {base.optim.steps} "
                                                        f"steps on this 2-core CPU", "config": changes}
                else:
                    print(f"{key}: {changes}", flush=True)
                    results["cells"][key] = run_cell(base, model.split("-")[0], problem, **changes)
                    c = results["cells"][key]
                    print(f"  {c['parameters']:,} parameters, test error {c['test_error']:.3e}, {c['time']:.1f} s",
                          flush=True)
                path.write_text(json.dumps(results, indent=1))


def table(results):
    """The verdict (one line per problem and budget), every cell, the first rule's cells, the sweeps."""
    sweeps = [f"- {d}: lr sweep on {s['on']}: global {s['global']['tries']} -> {s['global']['lr']:g}; "
              f"FNO {s['fno']['tries']} -> {s['fno']['lr']:g}" for d, s in results["sweeps"].items()]
    parts = ["Test error by problem and budget (parameters in brackets); the last column is the FNO's error over "
             "DD's from the same random start (> 1: DD lower); then the training seconds DD (random start) "
             "took to reach the FNO's final error, and the FNO's own.", "", verdict(results["cells"]),
             "Every cell:", "", cells_table(results["cells"])]
    if results.get("rule1"):
        parts += ["The first rule's cells (nearest parameter count, overlap 2, full coarse rank, non-symmetric DD "
                  "and global model), same data and steps:", "", cells_table(results["rule1"])]
    return "\n".join(parts + sweeps) + "\n"


def verdict(cells):
    """problem | budget | each model's error | fno / dd | seconds for DD and the FNO to reach the FNO's error."""
    lines = ["| problem | budget | dd | dd-schwarz | global | fno | fno / dd | dd s to fno's error | fno s |",
             "|" + "---|" * 9]
    for name in dict.fromkeys(k.split("/")[0] for k in cells):
        for budget in sorted({int(k.split("/")[1]) for k in cells if k.startswith(name + "/")}):
            row = [cells.get(f"{name}/{budget}/{m}", {}) for m in ("dd", "dd-schwarz", "global", "fno")]
            shown = [f"{c['test_error']:.3g} ({c['parameters']:,})" if "test_error" in c else "not run" for c in row]
            dd, fno = row[0].get("test_error"), row[3].get("test_error")
            ratio = f"{fno / dd:.2f}" if dd and fno else "-"
            to_fno = reached(row[0]["history"], fno)[1] if dd and fno else None
            secs = ("-" if not (dd and fno) else "never" if to_fno is None else f"{to_fno:.1f}",
                    f"{row[3]['time']:.0f}" if fno else "-")
            lines.append(f"| {name} | {budget:,} | " + " | ".join(shown) + f" | {ratio} | {secs[0]} | {secs[1]} |")
    return "\n".join(lines) + "\n"


def cells_table(cells):
    """Every cell: configuration, parameters, steps, error, reference, seconds to thresholds and in all."""
    lines = ["| problem | budget | model | configuration | parameters | steps | test error | reference | s to 1e-1 | "
             "s to 1e-2 | training s |", "|" + "---|" * 11]
    for key, c in cells.items():
        name, budget, model = key.split("/")
        conf = ", ".join(f"{k}={v}" for k, v in c.get("config", {}).items())
        if "skipped" in c:
            lines.append(f"| {name} | {int(budget):,} | {model} | {conf} | - | - | not run | {c['skipped']} | - | - | - |")
            continue
        ref = (f"capacity {c['capacity']:.2e}" if "capacity" in c else
               f"Schwarz start {c['schwarz_start']:.2e}" if "schwarz_start" in c else "-")
        reach = [c[f"reach_{t:g}"]["time"] for t in (1e-1, 1e-2)]
        secs = ["-" if t is None else f"{t:.1f}" for t in reach]
        lines.append(f"| {name} | {int(budget):,} | {model} | {conf} | {c['parameters']:,} | {c['steps']} | "
                     f"{c['test_error']:.2e} | {ref} | {secs[0]} | {secs[1]} | {c['time']:.1f} |")
    return "\n".join(lines) + "\n"


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
