"""Stable training: the demo's DD and global runs under Adam beta2 0.999 (the old default) and 0.95.

Trains the demo configuration (n = 1023, K = n, 10,000 steps, batch 64, lr 0.01, float32) with
beta2 in {0.999, 0.99, 0.95}, and beta2 = 0.999 at lr 0.003 (the other cure tried), and reports per
run the final test error, the largest jump between consecutive evaluations (every 100 steps) and
how many exceed 3x. Both models are run at 0.999 and 0.95.

    python benchmarks/stability.py --out benchmarks/results       # about 6 min on 2 cores

Writes stability.json, stability.md and stability.png (before/after curves).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pddattn.train import TrainConfig, train  # noqa: E402

VARIANTS = [("dd", 0.999, 0.01), ("dd", 0.99, 0.01), ("dd", 0.95, 0.01), ("dd", 0.999, 0.003),
            ("global", 0.999, 0.01), ("global", 0.95, 0.01)]


def jumps(errors):
    return [b / a for a, b in zip(errors, errors[1:])]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--steps", type=int, default=10000)
    args = ap.parse_args(argv)
    rows = []
    for model, beta2, lr in VARIANTS:
        cfg = TrainConfig.of(model=model, rank=8 if model == "dd" else 64, beta2=beta2, lr=lr, steps=args.steps,
                          checkpoint_every=10**9)
        _, s = train(cfg)
        errors = [r["test_error"] for r in s["history"]]
        j = jumps(errors)
        rows.append({"model": model, "beta2": beta2, "lr": lr, "final": errors[-1], "max_jump": max(j),
                     "jumps_over_3x": sum(x > 3 for x in j), "steps": [r["step"] for r in s["history"]],
                     "errors": errors})
        print(f"{model:6s} beta2={beta2:<6} lr={lr:<6} final {errors[-1]:.3e}  largest jump {max(j):.2f}x  "
              f"jumps > 3x: {rows[-1]['jumps_over_3x']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stability.json").write_text(json.dumps(rows, indent=1))
    lines = ["| model | beta2 | lr | final test error | largest jump | jumps > 3x |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['beta2']} | {r['lr']} | {r['final']:.2e} | {r['max_jump']:.2f}x | "
              f"{r['jumps_over_3x']} |" for r in rows]
    (out / "stability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    from pddattn.compare import pyplot
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7.5, 4.2), constrained_layout=True)
    for r in rows:
        ax.semilogy(r["steps"], r["errors"], label=f"{r['model']} beta2={r['beta2']} lr={r['lr']}",
                    lw=1.6 if r["beta2"] == 0.95 else 1.0, ls="-" if r["beta2"] == 0.95 else "--")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean relative L2 test error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("demo training curves: Adam beta2 0.999 (before) and 0.95 (after)")
    fig.savefig(out / "stability.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
