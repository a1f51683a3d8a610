"""The main job: DD attention against the global low-rank baseline.

Both models train on the same data (same seed, so the same batches and test
set), with the same batch size, step budget and schedule. The table reports
parameters, final test error, and the steps and training seconds (evaluation
excluded) at which each model first reached 1e-1, 1e-2 and 1e-3 on the test
set, checked every ``eval_every`` steps.

    pddattn compare --out runs/compare          # defaults: a few minutes on 2 cores
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .train import TrainConfig, train

__all__ = ["THRESHOLDS", "compare", "reached", "format_table", "plot_curves", "pyplot"]

THRESHOLDS = (1e-1, 1e-2, 1e-3)


def reached(history, threshold):
    """(step, seconds) of the first evaluation at or below ``threshold``, else (None, None)."""
    for row in history:
        if row["test_error"] <= threshold:
            return row["step"], row["time"]
    return None, None


def compare(base, global_rank=64, global_lr=None, dd_lr=None, out="runs/compare", layout=None, echo=print):
    """Train both models from ``base`` (a TrainConfig) and write results.json and curves.png.

    Returns the results dict (also written to ``out``/results.json).
    """
    out = Path(out)
    runs = {
        "global": dataclasses.replace(base, model="global", rank=global_rank, lr=global_lr or base.lr),
        "dd": dataclasses.replace(base, model="dd", lr=dd_lr or base.lr),
    }
    results = {"config": {name: cfg.to_dict() for name, cfg in runs.items()}, "models": {}}
    for name, cfg in runs.items():
        echo(f"training {name} ...")
        _, row = train(cfg, out=out / name, layout=layout)
        for t in THRESHOLDS:
            row[f"reach_{t:g}"] = dict(zip(("step", "time"), reached(row["history"], t)))
        results["models"][name] = row
    g, d = results["models"]["global"], results["models"]["dd"]
    results["ratios"] = {"error_global_over_dd": g["test_error"] / d["test_error"],
                         "parameters_dd_over_global": d["parameters"] / g["parameters"],
                         "time_dd_over_global": d["time"] / g["time"]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def format_table(results):
    """The comparison as a Markdown table (one row per model)."""
    head = ["model", "parameters", "test error"]
    for t in THRESHOLDS:
        head += [f"steps to {t:g}", f"s to {t:g}"]
    head.append("total s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in results["models"].items():
        cells = [name, f"{m['parameters']:,}", f"{m['test_error']:.2e}"]
        for t in THRESHOLDS:
            r = m[f"reach_{t:g}"]
            cells += ["-" if r["step"] is None else str(r["step"]),
                      "-" if r["time"] is None else f"{r['time']:.1f}"]
        cells.append(f"{m['time']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    ratio = results["ratios"]
    lines.append("")
    lines.append(f"DD error is {ratio['error_global_over_dd']:.1f}x lower with "
                 f"{ratio['parameters_dd_over_global']:.3f}x the parameters; "
                 f"training time ratio DD/global = {ratio['time_dd_over_global']:.2f}")
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
    """Test error against step and against training seconds, both models, log scale.

    Returns the path written, or None when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, m in results["models"].items():
        label = f"{name} ({m['parameters']:,} params)"
        steps = [r["step"] for r in m["history"]]
        times = [r["time"] for r in m["history"]]
        errors = [r["test_error"] for r in m["history"]]
        axes[0].semilogy(steps, errors, label=label)
        axes[1].semilogy(times, errors, label=label)
    for ax, xlabel in zip(axes, ("training step", "training wall time [s]")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean relative L2 test error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"DD attention vs global low-rank attention, n={results['config']['dd']['n']}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
