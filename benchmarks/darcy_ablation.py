"""The recipe ablations' shared loop (darcy_fno_ablation.py, darcy_gt_ablation.py): variants of one baseline,
each trained by the benchmark's loop on the same shuffles, their curves side by side.

Every epoch of every variant is saved (``darcy_state.TrainingState`` in ``OUT/state``), so a stopped ablation
resumes at the epoch it reached and skips the variants it finished; a state made for other data, splits or
epochs is refused.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import tempfile
from pathlib import Path

import torch

import darcy
from darcy_state import TrainingState

__all__ = ["main", "train_variants", "markdown", "quick_data", "slug"]


def slug(name):
    """A variant's name as a file name: 'paper, loss averaged' -> 'paper-loss-averaged'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def train_variants(variants, a, u, a_test, u_test, budget, until, log, folder, config, dropout_off=False):
    """{name: {"parameters", "recipe", "curve", "attention dropout off"?}} for ``variants``, a dict
    {name: () -> (model, recipe)}.

    Each model is made when its turn comes (from the same seed), trained for the first ``until`` epochs of a
    ``budget``-epoch schedule, and measured on the test fields after every epoch. ``folder``: where the state
    is saved, for ``config`` (a dict naming the data and epochs). ``dropout_off``: also measure each finished
    variant without the package Galerkin attention's test-time dropout (``deterministic_attention``)."""
    state, results = TrainingState(folder, config), {}
    finished = state.finished()
    for name, make in variants.items():
        key = slug(name)
        if key in finished:
            log(f"{name}: finished in an earlier run")
            results[name] = finished[key]
            continue
        torch.manual_seed(0)  # the dropouts' draws: the same for every variant
        model, recipe = make()
        evaluate = darcy.evaluator(model, a_test, u_test)
        curve = darcy.train(key, lambda pick: model(a[pick]), model, a, u, budget, evaluate, log, state=state,
                            recipe=recipe, until=until)
        results[name] = {"parameters": darcy.count(model), "recipe": dataclasses.asdict(recipe), "curve": curve}
        if dropout_off:
            with darcy.deterministic_attention():
                results[name]["attention dropout off"] = evaluate()
        state.finish(key, results[name])
    return results


def markdown(results, epochs, columns=None):
    """The table: parameters, ``columns`` ({heading: result -> text}), the test error at epochs 1, 2, 5, 10,
    20 and the last, and the last epoch's training error."""
    columns = columns or {}
    marks = [e for e in (1, 2, 5, 10, 20) if e < epochs] + [epochs]
    head = ["variant", "parameters", *columns, *(f"test, epoch {e}" for e in marks), "train, last epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, f"{r['parameters']:,}", *(text(r) for text in columns.values()),
                 *(f"{r['curve'][e - 1]['test']:.4f}" for e in marks), f"{r['curve'][-1]['train']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quick_data(grid=21):
    """Tiny Darcy data made on the spot (``--quick``), 40 training and 10 test fields: its path."""
    from pddattn import cli
    tmp = Path(tempfile.mkdtemp())
    cli.main(["data", "darcy", "--grid", str(grid), "--resolution", "41", "--train", "40", "--test", "10",
              "--out", str(tmp / "d.h5")])
    return str(tmp / "d.h5")


def main(argv, doc, stem, variants, budget=None, columns=None, dropout_off=False, quick=None):
    """An ablation script's command line: read the fields, train ``variants(a, u, quick)`` (a dict as
    ``train_variants`` takes it), write ``OUT/STEM.json`` and ``OUT/STEM.md`` and print the table.

    ``budget``: the schedule's epochs, of which the first ``--epochs`` are trained; None: ``--epochs`` is the
    whole budget. ``--quick`` trains ``quick`` epochs (default 2) on tiny fields made on the spot."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", help="darcy_85.h5 (train and test groups)")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10,
                        help=f"of the {budget}-epoch budget" if budget else "the whole budget")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--state", help=f"folder of the variants' saved epochs (default runs/{stem}_state)")
    parser.add_argument("--variants", help="comma-separated, as file names (default all): "
                        "'batches-of-20,no-h1-term' trains those two")
    args = parser.parse_args(argv)
    if not 1 <= args.epochs <= (budget or args.epochs):
        raise SystemExit(f"--epochs {args.epochs}: give 1 to {budget}")
    if args.quick:
        args.data, args.train, args.test, args.epochs = quick_data(), 40, 10, min(args.epochs, quick or 2)
        args.state = args.state or str(Path(args.data).parent / "state")
    if not args.data:
        raise SystemExit("give --data darcy_85.h5 (pddattn data darcy ...), or --quick")
    a, u = darcy.fields(args.data, "train", args.train)
    a_test, u_test = darcy.fields(args.data, "test", args.test)
    fields, budget = darcy.fingerprint(a, a_test), budget or args.epochs
    config = {"data": fields, "train": len(a), "test": len(a_test), "epochs": args.epochs, "budget": budget}
    chosen = variants(a, u, args.quick)
    if args.variants:
        wanted = args.variants.split(",")
        unknown = sorted(set(wanted) - {slug(name) for name in chosen})
        if unknown:
            raise SystemExit(f"--variants: no {', '.join(unknown)}; use {', '.join(slug(n) for n in chosen)}")
        chosen = {name: make for name, make in chosen.items() if slug(name) in wanted}
    results = train_variants(chosen, a, u, a_test, u_test, budget, args.epochs,
                             lambda line: print(line, flush=True), args.state or f"runs/{stem}_state", config,
                             dropout_off)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, args.epochs, columns)
    (out / f"{stem}.json").write_text(json.dumps(
        {"data": args.data, "fields": fields, "train": len(a), "test": len(a_test), "epochs": args.epochs,
         "budget": budget, "threads": torch.get_num_threads(), "variants": results}, indent=1))
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    return 0
