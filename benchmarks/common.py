"""Shared by the reproduction benchmarks: one training run with its honest reference error."""
from __future__ import annotations

import time

from pddattn.assembly import assemble
from pddattn.capacity import global_capacity, schwarz_start_error
from pddattn.train import train

CONFIG_KEYS = ("model", "problem", "n", "grid", "coefficient", "data", "modes", "rank", "coarse_rank", "subdomains",
               "overlap", "coarse_space", "lr", "steps", "batch", "levels", "init")


def run_one(base, problem=None, **changes):
    """Train ``base`` with ``changes``; add the global capacity or the DD Schwarz start, and wall time."""
    cfg = base.replace(**changes)
    wall = time.perf_counter()
    model, summary = train(cfg, out=None, problem=problem)
    summary["wall"] = time.perf_counter() - wall
    problem = problem or model.problem
    if cfg.model.kind == "global":
        summary["capacity"] = global_capacity(cfg, problem, model.train_data)[0]
    else:
        summary["schwarz_start"] = schwarz_start_error(cfg, problem, model.train_data)
    summary["config"] = {k: cfg.to_dict()[k] for k in CONFIG_KEYS}
    summary.pop("history_tensors", None)
    return summary


def reference_text(run):
    """'capacity X' for a global run, 'Schwarz start X' for a DD run: the honest reference next to its error."""
    return f"capacity {run['capacity']:.2e}" if "capacity" in run else f"Schwarz start {run['schwarz_start']:.2e}"


def best_global(base, problem, rank, lrs):
    """The global model of ``rank`` trained at each lr in ``lrs``; the run with the lowest test error."""
    tries = [run_one(base, problem, model="global", rank=rank, lr=lr) for lr in lrs]
    return min(tries, key=lambda t: t["test_error"])


def write_report(out, name, results, markdown, plot):
    """<name>.json, <name>.md and <name>.png in ``out``; print the headline table."""
    import json
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    (out / f"{name}.md").write_text(markdown(results) + "\n")
    plot(results, out / f"{name}.png")
    print(markdown(results).split("\n\nAll runs:")[0])


def references_for(config):
    """Capacity (global) or Schwarz start (DD) of a stored run, from its config alone (no training)."""
    from pddattn.models import model_from_architecture
    from pddattn.parallel.layout import SerialLayout
    from pddattn.train import TrainConfig, TrainData
    cfg = TrainConfig.from_dict({k: v for k, v in config.items() if v is not None or k == "coarse_rank"})
    problem, arch, sampler, hierarchy = assemble(cfg)
    model = model_from_architecture(arch, problem=problem, hierarchy=hierarchy)
    data = TrainData(cfg, model, SerialLayout(), sampler)
    if cfg.model.kind == "global":
        return {"capacity": global_capacity(cfg, problem, data)[0]}
    return {"schwarz_start": schwarz_start_error(cfg, problem, data, hierarchy)}


def time_to_reach(history, threshold):
    for row in history:
        if row["test_error"] <= threshold:
            return row["time"]
    return None


def headline(runs, fraction=0.2):
    """Best global; best DD with <= fraction of its parameters; ratios against its trained error and capacity."""
    glob = min((r for r in runs if r["model"] == "global"), key=lambda r: r["test_error"])
    small = [r for r in runs if r["model"] == "dd" and r["parameters"] <= fraction * glob["parameters"]]
    if not small:
        return {"global": glob, "dd": None}
    dd = min(small, key=lambda r: r["test_error"])
    return {"global": glob, "dd": dd, "ratio_trained": glob["test_error"] / dd["test_error"],
            "ratio_capacity": glob["capacity"] / dd["test_error"],
            "holds": glob["capacity"] / dd["test_error"] >= 10}
