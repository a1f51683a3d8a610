"""The main job: DD attention against the global low-rank baseline, with honest references.

Both models train on the same data (same seed, so the same batches and test
set), with the same batch size and schedule. Next to each trained error
stands a reference: for the global model its *capacity* (the best any rank-r
operator can do on this data, capacity.py), for DD the error of its
*Schwarz start* (the same architecture as truncated two-level additive
Schwarz, untrained). The headline gives DD's advantage over the trained
baseline and over the baseline's capacity, both: the first alone would
reward an under-trained baseline.

    pddattn compare --out runs/compare          # defaults: a few minutes on 2 cores
    pddattn compare --problem diffusion2d --grid 63x63 --subdomains 4x4 --coefficient jump:1e4
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .capacity import global_capacity, schwarz_start_error
from .train import train

__all__ = ["THRESHOLDS", "compare", "reached", "format_table", "plot_curves", "pyplot"]

THRESHOLDS = (1e-1, 1e-2, 1e-3)


def reached(history, threshold):
    """(step, seconds) of the first evaluation at or below ``threshold``, else (None, None)."""
    for row in history:
        if row["test_error"] <= threshold:
            return row["step"], row["time"]
    return None, None


def compare(base, global_rank=64, global_lr=None, dd_lr=None, out="runs/compare", layout=None, echo=print,
            global_steps=None):
    """Train both models from ``base`` (a TrainConfig); write and return results.json's dict."""
    from .parallel.layout import ConfigurationError
    if base.steps < 1 or (global_steps is not None and global_steps < 1):
        raise ConfigurationError("compare trains both models: --steps (and --global-steps) must be >= 1; "
                                 "`pddattn train --steps 0` saves an untrained model")
    out = Path(out)
    runs = {
        "global": dataclasses.replace(base, model="global", rank=global_rank, lr=global_lr or base.lr,
                                      steps=global_steps or base.steps),
        "dd": dataclasses.replace(base, model="dd", lr=dd_lr or base.lr),
    }
    problem, _, _ = runs["dd"].validate().build()
    results = {"config": {name: cfg.to_dict() for name, cfg in runs.items()}, "problem": problem.spec(),
               "models": {}}
    for name, cfg in runs.items():
        echo(f"training {name} ...")
        model, row = train(cfg, out=out / name, layout=layout, problem=problem)
        for t in THRESHOLDS:
            row[f"reach_{t:g}"] = dict(zip(("step", "time"), reached(row["history"], t)))
        if name == "global":
            row["capacity"] = global_capacity(cfg, problem, model.train_data)
        else:
            row["schwarz_start"] = schwarz_start_error(cfg, problem, model.train_data)
        results["models"][name] = row
    g, d = results["models"]["global"], results["models"]["dd"]
    results["ratios"] = {"error_global_over_dd": g["test_error"] / d["test_error"],
                         "capacity_over_dd": g["capacity"] / d["test_error"],
                         "global_over_capacity": g["test_error"] / g["capacity"],
                         "parameters_dd_over_global": d["parameters"] / g["parameters"],
                         "time_dd_over_global": d["time"] / g["time"]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def format_table(results):
    """The comparison as a Markdown table (one row per model) and the headline."""
    head = ["model", "parameters", "test error", "reference", "reference error"]
    for t in THRESHOLDS:
        head += [f"steps to {t:g}", f"s to {t:g}"]
    head.append("total s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in results["models"].items():
        ref = ("capacity (best rank-r)", m["capacity"]) if "capacity" in m else ("Schwarz start", m["schwarz_start"])
        cells = [name, f"{m['parameters']:,}", f"{m['test_error']:.2e}", ref[0], f"{ref[1]:.2e}"]
        for t in THRESHOLDS:
            r = m[f"reach_{t:g}"]
            cells += ["-" if r["step"] is None else str(r["step"]),
                      "-" if r["time"] is None else f"{r['time']:.1f}"]
        cells.append(f"{m['time']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    r, g = results["ratios"], results["models"]["global"]
    lines += ["", f"DD error is {r['error_global_over_dd']:.1f}x lower than the trained global model and "
                  f"{r['capacity_over_dd']:.1f}x lower than the global model's capacity, with "
                  f"{r['parameters_dd_over_global']:.3f}x the parameters; training time ratio DD/global = "
                  f"{r['time_dd_over_global']:.2f}",
              f"the global model ended {r['global_over_capacity']:.2f}x above its capacity after {g['steps']} steps"]
    return "\n".join(lines)


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
    for (name, m), colour in zip(results["models"].items(), ("tab:blue", "tab:orange")):
        label = f"{name} ({m['parameters']:,} params)"
        errors = [r["test_error"] for r in m["history"]]
        for ax, key in zip(axes, ("step", "time")):
            ax.semilogy([r[key] for r in m["history"]], errors, label=label, color=colour)
            if "capacity" in m:
                ax.axhline(m["capacity"], color=colour, ls="--", lw=1, label=f"{name} capacity (best rank-r)")
            else:
                ax.axhline(m["schwarz_start"], color=colour, ls=":", lw=1, label=f"{name} Schwarz start")
    for ax, xlabel in zip(axes, ("training step", "training wall time [s]")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean relative L2 test error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    p = results["problem"]
    fig.suptitle(f"DD attention vs global low-rank attention: {p['family']} {'x'.join(map(str, p['grid']))} "
                 f"{p['coefficient']}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
