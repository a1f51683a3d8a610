"""Which part of the FNO paper's recipe its Darcy error owes to: the first epochs of the stated budget.

The benchmark's ``fno`` (neuraloperator 2.0's FNO, scalar normalisers, the loss averaged over the batch)
and ``fno-paper`` (the paper's own model and script: pointwise normalisers, batch norm and ReLU, the loss
summed) are trained here beside the variants between them, each on the first ``--epochs`` epochs of the
100-epoch budget (the learning rate still 1e-3 until epoch 20), the same shuffles and batches:

  paper                                 fno-paper's first epochs
  paper, loss averaged                  the same, the loss averaged over the batch
  paper, scalar normalisers             a by its mean and deviation over all points, u by its RMS
  neuralop, pointwise normalisers       the benchmark's fno between the paper's normalisers
  neuralop (the benchmark's fno)        fno's first epochs

    python benchmarks/darcy_fno_ablation.py --data runs/darcy/darcy_85.h5 --epochs 10 --out benchmarks/results
    python benchmarks/darcy_fno_ablation.py --quick --out /tmp/ablation     # tiny data made on the spot
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import darcy  # noqa: E402
from pddattn.fno_paper import PaperFNO2D, PointwiseNormalised  # noqa: E402

BUDGET = 100  # the stated budget's epochs: its schedule, of which the first --epochs are trained


class Pointwise(PointwiseNormalised):
    """Any (B, 1, s, s) network between the paper's pointwise normalisers."""

    def __init__(self, net, side):
        super().__init__(side)
        self.net = net

    def network(self, x):
        return self.net(x[:, None])[:, 0]


def variants(side, a, u):
    """{name: (model a -> u, loss reduction)}, each made from the same seed."""
    modes = min(12, side // 2)
    return {
        "paper": (PaperFNO2D(side, modes=modes).fit(a, u), "sum"),
        "paper, loss averaged": (PaperFNO2D(side, modes=modes).fit(a, u), "mean"),
        "paper, scalar normalisers": (PaperFNO2D(side, modes=modes).fit(a, u, pointwise=False), "sum"),
        "neuralop, pointwise normalisers": (Pointwise(darcy.fno(32, 2 * modes), side).fit(a, u), "mean"),
        "neuralop (the benchmark's fno)": (darcy.FieldModel(darcy.fno(32, 2 * modes), u.pow(2).mean().sqrt()),
                                           "mean"),
    }


def run(a, u, a_test, u_test, epochs, log):
    results = {}
    for name, (model, reduction) in variants(a.shape[1], a, u).items():
        def evaluate():
            model.eval()
            with torch.no_grad():
                error = float(darcy.relative(model(a_test).double(), u_test.double()).mean())
            model.train()
            return error
        recipe = dataclasses.replace(darcy.COMMON, reduction=reduction)
        curve = darcy.train(name, lambda pick: model(a[pick]), model, a, u, BUDGET, evaluate, log,
                            recipe=recipe, until=epochs)
        results[name] = {"parameters": darcy.count(model), "loss": reduction, "curve": curve}
    return results


def markdown(results, epochs):
    marks = [e for e in (1, 2, 5, 10, 20) if e <= epochs] + ([epochs] if epochs not in (1, 2, 5, 10, 20) else [])
    lines = ["| variant | parameters | loss over the batch | " + " | ".join(f"test, epoch {e}" for e in marks)
             + " | train, last epoch |", "|---|---|---|" + "---|" * len(marks) + "---|"]
    for name, r in results.items():
        tests = " | ".join(f"{r['curve'][e - 1]['test']:.4f}" for e in marks)
        lines.append(f"| {name} | {r['parameters']:,} | {r['loss']} | {tests} | {r['curve'][-1]['train']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="darcy_85.h5 (train and test groups)")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10, help=f"of the {BUDGET}-epoch budget (at most {BUDGET})")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if not 1 <= args.epochs <= BUDGET:
        raise SystemExit(f"--epochs {args.epochs}: give 1 to {BUDGET}")
    if args.quick:
        from pddattn import cli
        tmp = Path(tempfile.mkdtemp())
        cli.main(["data", "darcy", "--grid", "21", "--resolution", "41", "--train", "40", "--test", "10",
                  "--out", str(tmp / "d.h5")])
        args.data, args.train, args.test, args.epochs = str(tmp / "d.h5"), 40, 10, min(args.epochs, 2)
    if not args.data:
        raise SystemExit("give --data darcy_85.h5 (pddattn data darcy ...), or --quick")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    a, u = darcy.fields(args.data, "train", args.train)
    a_test, u_test = darcy.fields(args.data, "test", args.test)
    log = lambda line: print(line, flush=True)  # noqa: E731
    results = run(a, u, a_test, u_test, args.epochs, log)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, args.epochs)
    (out / "darcy_fno_ablation.json").write_text(json.dumps(
        {"data": args.data, "fields": darcy.fingerprint(a, a_test), "train": len(a), "test": len(a_test),
         "epochs": args.epochs, "budget": BUDGET, "threads": torch.get_num_threads(), "variants": results},
        indent=1))
    (out / "darcy_fno_ablation.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
