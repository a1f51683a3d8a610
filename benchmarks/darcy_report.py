"""The Darcy benchmark's tables and plot (used by darcy.py): finished models, and those still training.

A finished model's row is its final test error; a model still training (its epochs saved in the state
folder, the run stopped or going on elsewhere) gets a row saying so, with the epoch it reached and that
epoch's test error, never as if it were a result of the stated budget.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["PUBLISHED", "markdown", "plot", "write"]

PUBLISHED = {"fno": "0.0108 (FNO paper)", "fno-paper": "0.0108 (FNO paper)", "gt": "0.0084 (Cao 2021)",
             "gt-cao": "0.0084 (Cao 2021)", "gt-cao-paper": "0.0084 (Cao 2021)"}


def _row(name, r, side):
    transfer = f"{r['transfer']:.4f}" if "transfer" in r else "-"
    seconds = f"{r['curve'][-1]['seconds']:.0f}"
    if not r.get("device", "cpu").startswith("cpu"):  # trained on a GPU: its seconds are not this machine's
        seconds += f" ({r['device']})"
    return (f"| {name} | {r['parameters']:,} | {r['test']:.4f} | {transfer} | {seconds} | "
            f"{PUBLISHED.get(name, '-')} |")


def _unfinished(name, r, epochs):
    last = r["curve"][-1]
    return (f"| {name} (training: epoch {last['epoch']} of {epochs}) | {r['parameters']:,} | {last['test']:.4f} "
            f"at epoch {last['epoch']} | - | {last['seconds']:.0f} so far | {PUBLISHED.get(name, '-')} |")


def markdown(result):
    side = result.get("side", 85)
    lines = [f"| model | parameters | test error ({result['test']} fields) | at 141^2, no retraining | "
             f"train s | published (original data, {side}^2) |", "|---|---|---|---|---|---|"]
    lines += [_row(name, r, side) for name, r in result["models"].items()]
    lines += [_unfinished(name, r, result["epochs"]) for name, r in result.get("in_progress", {}).items()]
    dd = result["models"].get("dd") or next((r for k, r in result["models"].items() if k.startswith("dd")), None)
    if dd:
        fine = f"{result['transfer floor']:.4f}" if "transfer floor" in result else "-"
        lines += [f"| AS once, exact local solves (no training) | - | {dd['AS once (exact local solves)']:.4f} | - | "
                  "- | - |",
                  f"| exact discrete solve on each grid (the floor) | - | {dd['discrete solve (floor)']:.4f} | "
                  f"{fine} | - | - |"]
    return "\n".join(lines + _draws({**result["models"], **result.get("in_progress", {})}))


def _draws(models):
    """Notes on models whose answer is random at test time: their error over more draws, and without it."""
    notes = [f"- {name}: its answer is random at test time (the package's attention drops half of K^T V "
             f"in eval mode too); test error over {len(r['test draws'])} more draws "
             f"{min(r['test draws']):.4f}-{max(r['test draws']):.4f}, with that dropout off "
             f"{r['test, attention dropout off']:.4f}" for name, r in models.items() if "test draws" in r]
    return [""] + notes if notes else []


def plot(result, path):
    """Test error per epoch of every model: solid when finished, dashed while training."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for group, style in (("models", "-"), ("in_progress", "--")):
        for name, r in result.get(group, {}).items():
            label = name if style == "-" else f"{name} (training)"
            ax.semilogy([c["epoch"] for c in r["curve"]], [c["test"] for c in r["curve"]], style, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test relative L2 error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result, out):
    """darcy.json, darcy.md, darcy.png (and darcy_time.md, darcy_time.png where the time to accuracy was
    measured)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "darcy.json").write_text(json.dumps(result, indent=1))
    (out / "darcy.md").write_text(markdown(result) + "\n")
    if "time_to_accuracy" in result:
        from darcy_time import markdown as time_markdown, plot as time_plot
        (out / "darcy_time.md").write_text(time_markdown(result["time_to_accuracy"]) + "\n")
        time_plot(result["time_to_accuracy"], out / "darcy_time.png")
        print(time_markdown(result["time_to_accuracy"]))
    plot(result, out / "darcy.png")
    print(markdown(result))
