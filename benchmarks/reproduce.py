"""Reproduction sweep: DD attention against the global low-rank baseline.

For n in {255, 1023, 4095} and data with K in {16, 64, n} Fourier modes
(few-mode data, where a global rank-r model is exact once r >= K, and
many-mode data, where it is not), train

  * the global baseline at ranks r in {8, 16, 32, 64}, each at the better of
    two learning rates (the baseline gets the benefit of tuning), and
  * DD attention in several (N, delta, local r, coarse r0) configurations at
    the default learning rate,

all on the same data (same seed: same batches, same test set) and the same
step budget. For each (n, K) the headline row compares the best global model
with the best DD model that has at most 1/5 of its parameters, and checks the
bar: >= 10x lower test error, and less training time to reach the global
model's final error.

    python benchmarks/reproduce.py --out benchmarks/results          # about 40 min on 2 cores
    python benchmarks/reproduce.py --quick --out /tmp/r               # smoke test, 1 min

Writes reproduce.json (every run, with its curve), reproduce.md (tables) and
reproduce.png (final error against parameters). Every global run also
records its capacity (the best rank-r operator on this data) and every DD
run the error of its Schwarz start, so the headline gives DD's ratio
against the trained baseline and against the baseline's capacity.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_global, reference_text, run_one, write_report  # noqa: E402
from pddattn.train import TrainConfig  # noqa: E402

GLOBAL_RANKS = (8, 16, 32, 64)
GLOBAL_LRS = (0.01, 0.03)
DD_LR = 0.01
# (N, delta, local r, coarse r0 or None for full), per n.
DD_CONFIGS = {
    255: [(8, 2, 4, None), (16, 1, 4, None), (16, 1, 8, None), (32, 1, 4, None)],
    1023: [(16, 4, 8, None), (32, 2, 8, None), (32, 2, 4, 16), (64, 1, 4, None), (128, 1, 4, 32)],
    4095: [(32, 8, 8, None), (64, 2, 8, None), (64, 4, 4, 32), (128, 1, 4, None), (256, 1, 4, 64)],
}


def time_to_reach(history, threshold):
    for row in history:
        if row["test_error"] <= threshold:
            return row["time"]
    return None


def headline(runs):
    """Best global model; best DD model with at most 1/5 of its parameters; the bar."""
    glob = min((r for r in runs if r["model"] == "global"), key=lambda r: r["test_error"])
    small = [r for r in runs if r["model"] == "dd" and r["parameters"] <= glob["parameters"] / 5]
    if not small:
        return {"global": glob, "dd": None}
    dd = min(small, key=lambda r: r["test_error"])
    t_dd = time_to_reach(dd["history"], glob["test_error"])
    ratio = glob["test_error"] / dd["test_error"]
    return {"global": glob, "dd": dd, "error_ratio": ratio, "param_ratio": dd["parameters"] / glob["parameters"],
            "capacity_ratio": glob["capacity"] / dd["test_error"],
            "dd_time_to_global_error": t_dd, "global_time": glob["time"],
            "holds": bool(ratio >= 10 and t_dd is not None and t_dd < glob["time"]),
            "holds_vs_capacity": bool(glob["capacity"] / dd["test_error"] >= 10)}


def describe(r):
    c = r["config"]
    if r["model"] == "global":
        return f"global r={c['rank']} (lr {c['lr']:g})"
    r0 = "full" if c["coarse_rank"] is None else c["coarse_rank"]
    return f"DD N={c['subdomains']} delta={c['overlap']} r={c['rank']} r0={r0}"


def markdown(results):
    lines = ["| n | K | best global | params | error | capacity | best DD (<= 1/5 params) | params | error | "
             "Schwarz start | vs trained | vs capacity | DD s to global's error | global s | bar (trained) | "
             "bar (capacity) |", "|" + "---|" * 16]
    for key, h in results["headline"].items():
        n, K = key.split(",")
        g, d = h["global"], h["dd"]
        if d is None:
            lines.append(f"| {n} | {K} | {describe(g)} | {g['parameters']:,} | {g['test_error']:.2e} | "
                         "(no DD run small enough) | | | | | | no |")
            continue
        t = "-" if h["dd_time_to_global_error"] is None else f"{h['dd_time_to_global_error']:.1f}"
        lines.append(f"| {n} | {K} | {describe(g)} | {g['parameters']:,} | {g['test_error']:.2e} | "
                     f"{g['capacity']:.2e} | {describe(d)} | {d['parameters']:,} | {d['test_error']:.2e} | "
                     f"{d['schwarz_start']:.2e} | {h['error_ratio']:.3g}x | {h['capacity_ratio']:.3g}x | {t} | "
                     f"{h['global_time']:.1f} | {'holds' if h['holds'] else 'missed'} | "
                     f"{'holds' if h['holds_vs_capacity'] else 'missed'} |")
    lines += ["", "All runs:", "", "| n | K | model | params | test error | reference | train s |",
              "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['config']['n']} | {r['config']['modes']} | {describe(r)} | {r['parameters']:,} | "
                     f"{r['test_error']:.2e} | {reference_text(r)} | {r['time']:.1f} |")
    return "\n".join(lines)


def plot(results, path):
    from pddattn.compare import pyplot
    plt = pyplot()
    if plt is None:
        return
    keys = list(results["headline"])
    ns = sorted({int(k.split(",")[0]) for k in keys})
    Ks = sorted({k.split(",")[1] for k in keys}, key=lambda s: (s == "n", int(s) if s != "n" else 0))
    fig, axes = plt.subplots(len(ns), len(Ks), figsize=(4 * len(Ks), 3.3 * len(ns)), squeeze=False,
                             constrained_layout=True)
    for i, n in enumerate(ns):
        for j, K in enumerate(Ks):
            ax = axes[i][j]
            runs = [r for r in results["runs"] if r["config"]["n"] == n and r["key_modes"] == K]
            for model, marker, key, label in (("global", "o", "test_error", "global"),
                                              ("global", "_", "capacity", "global capacity"),
                                              ("dd", "s", "test_error", "dd"),
                                              ("dd", "x", "schwarz_start", "dd Schwarz start")):
                pts = sorted((r["parameters"], r[key]) for r in runs if r["model"] == model)
                if pts:
                    ax.loglog(*zip(*pts), marker + ("--" if key == "capacity" else ""), label=label, alpha=0.8)
            ax.set_title(f"n={n}, K={K}")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlabel("parameters")
            ax.set_ylabel("test error")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--sizes", default="255,1023,4095")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (n=255, few steps)")
    p.add_argument("--replot", action="store_true", help="redo reproduce.md and .png from reproduce.json")
    p.add_argument("--references", action="store_true",
                   help="add capacity / Schwarz start to the runs stored in reproduce.json (no training), then replot")
    args = p.parse_args(argv)
    if args.references:
        from common import references_for
        path = Path(args.out) / "reproduce.json"
        results = json.loads(path.read_text())
        for r in results["runs"]:
            r.update(references_for(r["config"]))
        for key in results["headline"]:
            n, K = key.split(",")
            runs = [r for r in results["runs"] if r["config"]["n"] == int(n) and r["key_modes"] == K]
            results["headline"][key] = headline(runs)
        results["references_added_later"] = True
        return write_report(Path(args.out), "reproduce", results, markdown, plot)
    if args.replot:
        results = json.loads((Path(args.out) / "reproduce.json").read_text())
        return write_report(Path(args.out), "reproduce", results, markdown, plot)
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = args.steps
    global_ranks, global_lrs = GLOBAL_RANKS, GLOBAL_LRS
    if args.quick:
        sizes, steps, global_ranks, global_lrs = [255], 60, (8, 64), (0.01,)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"steps": steps, "batch": 64, "runs": [], "headline": {}}
    for n in sizes:
        for K in (16, 64, n):
            key_modes = "n" if K == n else str(K)
            base = TrainConfig.of(n=n, modes=K, steps=steps, eval_every=max(steps // 40, 1), dtype="float32",
                               checkpoint_every=10**9)
            runs = [best_global(base, None, r, global_lrs) for r in global_ranks]
            for (N, delta, r, r0) in DD_CONFIGS[n][: 2 if args.quick else None]:
                runs.append(run_one(base, model="dd", subdomains=N, overlap=delta, rank=r, coarse_rank=r0, lr=DD_LR))
            for r in runs:
                r["key_modes"] = key_modes
                print(f"n={n} K={key_modes:>4} {describe(r):38s} params={r['parameters']:>8,} "
                      f"error={r['test_error']:.2e} time={r['time']:.1f}s", flush=True)
            results["runs"] += runs
            results["headline"][f"{n},{key_modes}"] = headline(runs)
            (out / "reproduce.json").write_text(json.dumps(results, indent=1))
    write_report(out, "reproduce", results, markdown, plot)


if __name__ == "__main__":
    main()
