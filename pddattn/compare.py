"""The main job: DD attention against the global low-rank baseline, with honest references.

Both models train on the same data (same seed, so the same batches and test
set), with the same batch size and schedule. Next to each trained error
stands a reference: for the global model its *capacity* (the best any rank-r
operator can do on this data, capacity.py), for DD the error of its
*Schwarz start* (the same architecture as truncated two-level additive
Schwarz, untrained). The headline gives DD's advantage over the trained
baseline and over the baseline's capacity, both: the first alone would
reward an under-trained baseline. Without a matrix (the user's pairs alone,
``--data FILE``) the capacity is the best rank-r linear map fitted to the
training pairs (reduced-rank regression, regression.py) and DD has no
Schwarz start. ``--baseline fno`` adds the Fourier Neural Operator (fno.py),
trained on the same batches and test set with its own recipe.

    pddattn compare --out runs/compare          # defaults: a few minutes on 2 cores
    pddattn compare --problem diffusion2d --grid 63x63 --subdomains 4x4 --coefficient jump:1e4
    pddattn compare --data pairs.npz --subdomains 4x4 --baseline global,fno
"""
from __future__ import annotations

import json
from pathlib import Path

from .assembly import assemble, data_kind
from .budget import dd_at_budget, fno_at_budget, global_at_budget
from .capacity import global_capacity, schwarz_start_error
from .errors import ConfigurationError
from .train import train

__all__ = ["THRESHOLDS", "BASELINES", "FNO_LR", "compare", "parse_baselines", "reached", "format_table",
           "plot_curves", "pyplot"]

THRESHOLDS = (1e-1, 1e-2, 1e-3)
BASELINES = ("global", "fno")
FNO_LR = 1e-3  # AdamW; chosen by the sweep in benchmarks/fno_compare.py (docs/results.md)


def parse_baselines(text):
    """'global', 'fno' or 'global,fno' as a tuple; ConfigurationError otherwise."""
    names = tuple(dict.fromkeys(t.strip() for t in str(text).split(",") if t.strip()))
    bad = [t for t in names if t not in BASELINES]
    if not names or bad:
        raise ConfigurationError(f"--baseline must be global, fno or global,fno, got {text!r}")
    return names


def reached(history, threshold):
    """(step, seconds) of the first evaluation at or below ``threshold``, else (None, None)."""
    for row in history:
        if row["test_error"] <= threshold:
            return row["step"], row["time"]
    return None, None


def compare(base, global_rank=64, global_lr=None, dd_lr=None, out="runs/compare", layout=None, echo=print,
            global_steps=None, baselines=("global",), fno_lr=None, budget=None):
    """Train DD and the ``baselines`` from ``base`` (a TrainConfig); write and return results.json's dict.

    ``budget``: every model's size from the rules of ``pddattn.budget`` at this many
    parameters (DD's decomposition and ranks, the global rank, the FNO's width and
    modes) instead of ``base``, ``global_rank`` and ``base.fno_*``.
    """
    if base.optim.steps < 1 or (global_steps is not None and global_steps < 1):
        raise ConfigurationError("compare trains every model: --steps (and --global-steps) must be >= 1; "
                                 "`pddattn train --steps 0` saves an untrained model")
    out = Path(out)
    problem, sizes = None, {}
    if budget is not None:
        problem, sizes = _sizes_at_budget(base, budget, baselines)
        echo(f"--budget {budget:,}: " + "; ".join(f"{k} {v['config']} ({v['parameters']:,} parameters)"
                                                  for k, v in sizes.items()))
        base = base.replace(**sizes["dd"]["config"])
        global_rank = sizes.get("global", {}).get("config", {}).get("rank", global_rank)
        if "fno" in sizes:
            base = base.replace(**sizes["fno"]["config"])
    runs = {}
    if "global" in baselines:
        runs["global"] = base.replace(model="global", rank=global_rank, lr=global_lr or base.optim.lr,
                                     steps=global_steps or base.optim.steps)
    if "fno" in baselines:
        runs["fno"] = base.replace(model="fno", lr=fno_lr or FNO_LR)
    runs["dd"] = base.replace(model="dd", lr=dd_lr or base.optim.lr)
    for cfg in runs.values():
        cfg.validate()  # every model's configuration (the FNO's extra included) before any training
    problem, _, _, hierarchy = assemble(runs["dd"], problem)  # the DD model and its Schwarz start share the levels
    results = {"config": {name: cfg.as_run(problem).to_dict() for name, cfg in runs.items()}, "problem": problem.spec(),
               **({"budget": {"parameters": budget, "rule": "pddattn.budget", **sizes}} if sizes else {}),
               "data": problem.pairs.describe() if problem.pairs is not None else {"kind": data_kind(base, problem)},
               "models": {}}
    for name, cfg in runs.items():
        echo(f"training {name} ...")
        model, row = train(cfg, out=out / name, layout=layout, problem=problem,
                           hierarchy=hierarchy if name == "dd" else None)
        for t in THRESHOLDS:
            row[f"reach_{t:g}"] = dict(zip(("step", "time"), reached(row["history"], t)))
        if name == "global":
            row["capacity"], row["capacity_kind"] = global_capacity(cfg, problem, model.train_data)
        elif name == "dd":
            row["schwarz_start"] = schwarz_start_error(cfg, problem, model.train_data, hierarchy) \
                if problem.has_operator \
                else None
        results["models"][name] = row
    results["ratios"] = _ratios(results["models"])
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def _sizes_at_budget(base, budget, baselines):
    """(problem, {model: {"config": changes, "parameters": count}}) by the rules of pddattn.budget."""
    problem = assemble(base.replace(model="global").validate()).problem  # no decomposition yet
    try:
        changes, params = dd_at_budget(base, problem, budget)
        sizes = {"dd": {"config": changes, "parameters": params}}
        if "global" in baselines:
            rank, params = global_at_budget(problem.n, budget, changes["symmetric"])
            sizes["global"] = {"config": {"rank": rank, "symmetric": changes["symmetric"]}, "parameters": params}
        if "fno" in baselines:
            base.replace(model="fno").validate()  # the extra's one-line error first
            w, m, params = fno_at_budget(tuple(problem.grid), budget)
            sizes["fno"] = {"config": {"fno_width": w, "fno_modes": m}, "parameters": params}
    except ValueError as exc:
        raise ConfigurationError(f"--budget {budget:,}: {exc}") from None
    return problem, sizes


def _ratios(models):
    d, out = models["dd"], {}
    if "global" in models:
        g = models["global"]
        out.update({"error_global_over_dd": g["test_error"] / d["test_error"],
                    "capacity_over_dd": g["capacity"] / d["test_error"],
                    "global_over_capacity": g["test_error"] / g["capacity"],
                    "parameters_dd_over_global": d["parameters"] / g["parameters"],
                    "time_dd_over_global": d["time"] / g["time"]})
    if "fno" in models:
        f = models["fno"]
        out.update({"error_fno_over_dd": f["test_error"] / d["test_error"],
                    "parameters_dd_over_fno": d["parameters"] / f["parameters"],
                    "time_dd_over_fno": d["time"] / f["time"]})
    return out


def format_table(results):
    """The comparison as a Markdown table (one row per model) and the headline."""
    head = ["model", "parameters", "test error", "reference", "reference error"]
    for t in THRESHOLDS:
        head += [f"steps to {t:g}", f"s to {t:g}"]
    head.append("total s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in results["models"].items():
        ref = _reference(m)
        cells = [name, f"{m['parameters']:,}", f"{m['test_error']:.2e}", ref[0],
                 "-" if ref[1] is None else f"{ref[1]:.2e}"]
        for t in THRESHOLDS:
            r = m[f"reach_{t:g}"]
            cells += ["-" if r["step"] is None else str(r["step"]),
                      "-" if r["time"] is None else f"{r['time']:.1f}"]
        cells.append(f"{m['time']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    r, lines = results["ratios"], lines + [""]
    if "global" in results["models"]:
        g = results["models"]["global"]
        lines += [f"DD error is {_times(r['error_global_over_dd'])} the trained global model's and "
                  f"{_times(r['capacity_over_dd'])} the global model's capacity, with "
                  f"{r['parameters_dd_over_global']:.3f}x the parameters; training time ratio DD/global = "
                  f"{r['time_dd_over_global']:.2f}",
                  f"the global model ended {r['global_over_capacity']:.2f}x above its capacity "
                  f"({g['capacity_kind']}) after {g['steps']} steps"]
    if "fno" in results["models"]:
        lines.append(f"DD error is {_times(r['error_fno_over_dd'])} the FNO's, with "
                     f"{r['parameters_dd_over_fno']:.3f}x its parameters; training time ratio DD/FNO = "
                     f"{r['time_dd_over_fno']:.2f}")
    return "\n".join(lines)


def _times(other_over_dd):
    """'41.4x lower than' or '1.4x higher than': the ratio of another error to DD's, in the right direction."""
    if other_over_dd >= 1:
        return f"{other_over_dd:.1f}x lower than"
    return f"{1 / other_over_dd:.1f}x higher than"


def _reference(m):
    """(name, error) of a model's reference: the global model's capacity, DD's Schwarz start, none for FNO."""
    if "capacity" in m:
        return f"capacity ({m.get('capacity_kind', 'best rank-r')})", m["capacity"]
    if "schwarz_start" in m:
        return ("Schwarz start", m["schwarz_start"]) if m["schwarz_start"] is not None else ("none (no A)", None)
    return "none", None


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_curves(results, path):
    """Test error against step and training seconds, log scale; capacity and Schwarz start as lines.

    Returns the path written, or None when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    colours = {"global": "tab:blue", "dd": "tab:orange", "fno": "tab:green"}
    for name, m in results["models"].items():
        colour = colours[name]
        label = f"{name} ({m['parameters']:,} params)"
        errors = [r["test_error"] for r in m["history"]]
        for ax, key in zip(axes, ("step", "time")):
            ax.semilogy([r[key] for r in m["history"]], errors, label=label, color=colour)
            ref, value = _reference(m)
            if value is not None:
                ax.axhline(value, color=colour, ls="--" if "capacity" in m else ":", lw=1, label=f"{name} {ref}")
    for ax, xlabel in zip(axes, ("training step", "training wall time [s]")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean relative L2 test error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    p = results["problem"]
    what = "the user's pairs" if p["family"] == "data" else f"{p['family']} {p['coefficient']}"
    fig.suptitle(f"DD attention vs {' and '.join(n for n in results['models'] if n != 'dd')}: {what} on "
                 f"{'x'.join(map(str, p['grid']))}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
