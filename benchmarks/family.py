"""One model for a family of operators (family.py): held-out error against classical Schwarz at equal steps.

Darcy fields (``--coefficient darcy``: the FNO paper's 12 / 3 field) on diffusion2d at 63^2, boxes of
8 x 8 nodes with overlap 2, the Q1 coarse space (``--coarse harmonic``: the GDSW-type one) with an
exact coarse solve. The model's local factors are generated from the operator (rank 16, a 4-layer
convolutional network of width 32 shared by all subdomains) and trained on K operators (seeds 1..K) for
``--steps`` Adam steps, for one application or through K unrolled steps
u_(k+1) = u_k + M(A)^-1 (f - A u_k) (``--unroll 1,4``: one model each); data ``--data solve`` (f white, u = A^-1 f; 64 pairs per training
operator, 16 per held-out one) or ``ones`` (f = 1, Darcy's own right-hand side: one pair per operator).
Every error is measured on held-out operators (seeds 1001..1016): the mean relative L2 error after 1 and 4
steps, next to the same structure with exact local solves (additive, the paper's D^1/2 weights, and
restricted, RAS) iterated the same way, and the trained model applied at 127^2 (boxes of the same size)
with no retraining. One core (OMP_NUM_THREADS=1); seconds per answer are the 4-step iteration's on 16
right-hand sides, divided by 16.

    python benchmarks/family.py --out benchmarks/results            # about 40 minutes
    python benchmarks/family.py --data ones --operators 64 --out benchmarks/results   # family_ones.*
    python benchmarks/family.py --quick --out /tmp/family            # 31^2, a minute
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pddattn.family import FamilyDDAttention, fit, iterate, schwarz  # noqa: E402
from pddattn.hierarchy import build_hierarchy  # noqa: E402
from pddattn.problems import make_problem  # noqa: E402
from pddattn.problems.samplers import make_sampler  # noqa: E402

HELD_OUT = range(1001, 1017)


def _problems(seeds, side):
    return [make_problem("diffusion2d", (side, side), "darcy", seed=s) for s in seeds]


def _data(problems, count, seed, kind="solve"):
    """[(f, u)] per operator: ``count`` white f (solve) or the one f = 1 (ones), u = A^-1 f."""
    if kind == "ones":
        return [(torch.ones(1, p.n, dtype=torch.float64), torch.as_tensor(p.solve(np.ones((p.n, 1))).T))
                for p in problems]
    return [tuple(torch.as_tensor(a) for a in make_sampler("solve", p, seed=seed).sample(count)) for p in problems]


def _error(apply_of, ops, data, steps):
    """(mean relative L2 error after ``steps``, seconds per answer) over the operators."""
    errors, seconds, answers = [], 0.0, 0
    with torch.no_grad():
        for op, (f, u) in zip(ops, data):
            t0 = time.perf_counter()
            y = iterate(apply_of(op), op.A, f, steps)
            seconds, answers = seconds + time.perf_counter() - t0, answers + len(f)
            errors.append((y - u).norm(dim=1) / u.norm(dim=1))
    return float(torch.cat(errors).mean()), seconds / answers


def _rows(model, side, boxes, seeds, kind, coarse):
    """Held-out rows at side^2: the learned model (its weights as they are), AS and RAS."""
    spec = _spec(boxes, coarse)
    problems = _problems(seeds, side)
    target = FamilyDDAttention(build_hierarchy(problems[0], spec), model.r, model.width, model.depth)
    target.load_state_dict(model.state_dict())
    ops, data = target.values([p.A for p in problems]), _data(problems, 16, 2, kind)
    out = {}
    for name, apply_of in (("learned", target.apply_of),
                           ("AS (exact local solves)", lambda op: schwarz(target, op)),
                           ("RAS (exact local solves)", lambda op: schwarz(target, op, restricted=True))):
        out[name] = {f"K={k}": _error(apply_of, ops, data, k) for k in (1, 4)}
    return out


def _spec(boxes, coarse):
    return {"kind": "boxes", "N": [boxes, boxes], "delta": 2, "pou": "count", "coarse": coarse}


def run(side, boxes, operators, steps, kind="solve", seed=0, unroll=4, coarse="q1"):
    spec = _spec(boxes, coarse)
    train = _problems(range(1, operators + 1), side)
    torch.manual_seed(seed)
    model = FamilyDDAttention(build_hierarchy(train[0], spec), r=16, width=32, depth=4)
    t0 = time.perf_counter()
    ops, data = model.values([p.A for p in train]), _data(train, 64, 1, kind)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit(model, ops, data, steps=steps, lr=1e-3, batch=16 if kind == "solve" else 1, unroll=unroll,
        seed=seed)
    row = {"operators": operators, "steps": steps, "unroll": unroll, "coarse": coarse, "parameters": model.num_parameters(),
           "setup_s": setup, "train_s": time.perf_counter() - t0,
           "train_error": {f"K={k}": _error(model.apply_of, ops[:16],
                                           [(f[:16], u[:16]) for f, u in data[:16]], k)[0] for k in (1, 4)},
           "held_out": _rows(model, side, boxes, HELD_OUT, kind, coarse),
           "finer": _rows(model, 2 * side + 1, 2 * boxes, HELD_OUT[:8], kind, coarse)}
    return row


def free_model(side, boxes, steps, kind, seeds=HELD_OUT[:4]):
    """The paper's per-operator model: free factors (same boxes, overlap, Q1 coarse space, rank 16, symmetric)
    trained on each held-out operator itself (white f pairs of it, the default recipe) for ``steps`` steps;
    its error on that operator's data of this benchmark (``kind``). Mean over ``seeds``."""
    from pddattn.config import TrainConfig
    from pddattn.train import train
    errors, seconds = [], []
    for seed in seeds:
        cfg = TrainConfig.of(model="dd", problem="diffusion2d", grid=f"{side}x{side}", coefficient="darcy",
                          coefficient_seed=seed, subdomains=f"{boxes}x{boxes}", overlap=2, coarse_space="q1",
                          rank=16, symmetric=True, data="solve", steps=steps, dtype="float64", eval_every=steps,
                          checkpoint_every=10**9, test_size=64)
        t0 = time.perf_counter()
        model, _ = train(cfg)
        seconds.append(time.perf_counter() - t0)
        problem = _problems([seed], side)[0]
        (f, u), = _data([problem], 16, 2, kind)
        with torch.no_grad():
            y = model(f)
        errors.append(float(((y - u).norm(dim=1) / u.norm(dim=1)).mean()))
    return {"error": float(np.mean(errors)), "train_s": float(np.mean(seconds)), "operators": len(seeds)}


def markdown(result):
    side = result["side"]
    lines = [f"| trained on | method | held-out {side}^2, K=1 | K=4 | s per answer (K=4) | "
             f"{2 * side + 1}^2 no retraining, K=1 | K=4 | train error K=1 / K=4 |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        for name, cells in row["held_out"].items():
            finer = row["finer"][name]
            train = (f"{row['train_error']['K=1']:.3f} / {row['train_error']['K=4']:.3f}"
                     if name == "learned" else "-")
            lines.append(f"| {row['operators']} operators, {row['steps']} steps, unrolled K={row['unroll']} | {name} | {cells['K=1'][0]:.3f} | "
                         f"{cells['K=4'][0]:.3f} | {cells['K=4'][1] * 1e3:.1f} ms | {finer['K=1'][0]:.3f} | "
                         f"{finer['K=4'][0]:.3f} | {train} |")
    if "free" in result:
        f = result["free"]
        lines.append(f"| the test operator itself, {result['rows'][0]['steps']} steps | free factors (the paper's "
                     f"model, one per operator) | {f['error']:.3f} | - | - | - | - | {f['train_s']:.0f} s each |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="31^2, 4x4 boxes, 8 operators, 40 steps")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--operators", default="16,64")
    parser.add_argument("--unroll", default="1,4", help="trained through K unrolled steps, each K listed")
    parser.add_argument("--free", action="store_true", help="add the per-operator free-factor model's row")
    parser.add_argument("--coarse", default="q1", help="coarse space (q1: contains the bilinears; harmonic)")
    parser.add_argument("--data", choices=("solve", "ones"), default="solve")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    side, boxes = (31, 4) if args.quick else (63, 8)
    counts = [8] if args.quick else [int(k) for k in args.operators.split(",")]
    steps = 40 if args.quick else args.steps
    result = {"side": side, "boxes": boxes, "data": args.data, "coarse": args.coarse,
              "rows": [run(side, boxes, k, steps, args.data, unroll=int(K), coarse=args.coarse)
                       for k in counts for K in args.unroll.split(",")]}
    if args.free:
        result["free"] = free_model(side, boxes, steps, args.data)
    out = Path(args.out)
    name = ("family" if args.data == "solve" else "family_ones") + ("" if args.coarse == "q1" else f"_{args.coarse}")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
