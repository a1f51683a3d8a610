"""Multilevel DD attention: kappa, parameters and step time against n, accuracy at equal parameters.

1. kappa(M A) in 2D of the Schwarz-initialised operator (full ranks: multilevel additive
   Schwarz) with 2 and 3 levels, boxes with H/h = 8 and delta = 2 at 63^2 and 127^2 (top
   level about 16 rows), by 200 Lanczos steps on M A (spectrum.py).
2. Scale, serially: parameters, training-step time (forward + backward + Adam, batch 16,
   float32, median of 5) and model memory (parameters, Adam moments and buffers, counted)
   against n, 1D (intervals, cores of 64, delta 2, r 8, hat coarse) and 2D (boxes of 16x16,
   q1 coarse), for levels 2, 3, 4 (top level 64 rows) and the global model with the
   parameters of the 3-level one; the flops of one application (the dense products,
   ``level_flops``, batch 16); the fitted slopes of log(parameters), log(flops) and
   log(step time) against log(n). A configuration whose model memory would pass --max-gib is not built;
   its parameters are still counted from the sizes.
4. On paper: per-rank step time and weak-scaling efficiency from 1 to 65,536 ranks, two-level
   against multilevel (see ``projection``), from the measured level-0 step time.
3. Accuracy at equal parameters (laplace1d n = 4095, 256 subdomains, Fourier data, 3000
   steps): two-level (r = 4, full coarse rank 255) against three-level with the local rank
   raised to the same parameter count, each trained from a random and from the Schwarz
   start, and the global model of that size with its capacity.

    python benchmarks/multilevel.py --out benchmarks/results            # about 35 min on 2 cores
    python benchmarks/multilevel.py --quick --out /tmp/ml                # smoke test
    python benchmarks/multilevel.py --skip kappa,scale,accuracy --merge --out benchmarks/results   # projection only

Writes multilevel.json, multilevel.md and multilevel.png.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pddattn import DDAttention, boxes, intervals, make_problem  # noqa: E402
from pddattn.operators import GlobalAttention  # noqa: E402
from pddattn.spectrum import condition_number  # noqa: E402


def kappa_table(grids, problems):
    rows = []
    for family, coefficient in problems:
        for side in grids:
            p = make_problem(family, (side, side), coefficient)
            B = (side + 1) // 8
            for coarse in ("q1", "harmonic"):
                d = boxes((side, side), (B, B), 2, coarse=coarse, A=p.A)
                row = {"problem": family if coefficient == "const" else f"{family} {coefficient}", "grid": side,
                       "coarse": coarse, "n0": d.coarse_size}
                for levels in (2, 3):
                    m = DDAttention(d, r=d.max_size, init="schwarz", symmetric=True, problem=p, dtype=torch.float64,
                                    levels=levels, top_size=16)
                    row[f"kappa{levels}"] = condition_number(m, steps=200)
                    row[f"params{levels}"] = m.num_parameters()
                    if levels == 3:
                        row["n1_top"] = m.next_level.decomposition.coarse_size
                print(f"{row['problem']:24s} {side}^2 {coarse:9s} kappa 2-level {row['kappa2']:.3g} "
                      f"3-level {row['kappa3']:.3g} (n_0 {row['n0']} -> top {row['n1_top']})", flush=True)
                rows.append(row)
    return rows


def _model_bytes(model):
    """Parameters (with Adam's two moments and the gradient) and buffers, in bytes."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return 4 * params + buffers


def _step_time(model, n, batch=16, repeats=5):
    from pddattn.bench import time_steps
    g = torch.Generator().manual_seed(0)
    f = torch.randn(n, batch, generator=g)
    u = torch.randn(n, batch, generator=g)
    return statistics.median(time_steps(model, f, u, 3) for _ in range(repeats))


def _count_two_level(d, r):
    return 2 * int(d.sizes.sum()) * r + 2 * d.coarse_size ** 2


def scale_table(sizes_1d, sides_2d, max_gib):
    rows = []
    cases = [("1D", n, lambda n: intervals(n, max(2, (n + 1) // 64), 2)) for n in sizes_1d]
    cases += [("2D", s * s, lambda n, s=s: boxes((s, s), ((s + 1) // 16,) * 2, 2)) for s in sides_2d]
    for dim, n, build in cases:
        t0 = time.perf_counter()
        d = build(n)
        problem = make_problem("laplace1d", (n,)) if dim == "1D" else make_problem("poisson2d", (int(n ** 0.5),) * 2)
        for levels in (2, 3, 4, "global"):
            row = {"dim": dim, "n": n, "model": f"{levels}-level" if levels != "global" else "global"}
            if levels == 2 and 16 * _count_two_level(d, 8) > max_gib * 2**30:
                row.update(parameters=_count_two_level(d, 8), built=False)
                rows.append(row)
                print(f"{dim} n={n:>10,} 2-level: {row['parameters']:,} parameters (not built: over {max_gib} GiB)")
                continue
            try:
                if levels == "global":
                    r = max(1, round(rows[-2]["parameters"] / (2 * n)))  # as many as the 3-level model
                    model = GlobalAttention(n, r, problem=problem)
                else:
                    model = DDAttention(d, r=8, problem=problem, levels=levels, top_size=64)
            except ValueError as exc:
                row.update(built=False, note=str(exc))
                rows.append(row)
                continue
            flops = 4 * n * model.r * 16 if levels == "global" else sum(v for _, v in model.level_flops(16))
            row.update(parameters=model.num_parameters(), built=True, memory_bytes=_model_bytes(model),
                       apply_flops=flops, step_seconds=_step_time(model, n))
            if levels != "global" and levels > 2:
                row["top"] = model.level_operators[-1].decomposition.coarse_size
            rows.append(row)
            print(f"{dim} n={n:>10,} {row['model']:8s}: {row['parameters']:>12,} parameters, "
                  f"{1e3 * row['step_seconds']:8.1f} ms/step, {row['memory_bytes'] / 2**20:8.1f} MiB"
                  + (f", top {row['top']}" if "top" in row else ""), flush=True)
            del model
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    slopes = {}
    for dim in ("1D", "2D"):
        for model in ("2-level", "3-level", "4-level", "global"):
            pts = [(r["n"], r) for r in rows if r["dim"] == dim and r["model"] == model and r.get("built")]
            if len(pts) >= 2:
                x = np.log([n for n, _ in pts])
                slopes[f"{dim} {model}"] = {
                    key: float(np.polyfit(x, np.log([r[field] for _, r in pts]), 1)[0])
                    for key, field in (("parameters", "parameters"), ("flops", "apply_flops"),
                                       ("step", "step_seconds"))}
    return rows, slopes


def accuracy(steps):
    from common import best_global, run_one
    from pddattn.models import problem_of
    from pddattn.train import TrainConfig
    base = TrainConfig.of(n=4095, subdomains=256, overlap=2, steps=steps, eval_every=max(steps // 20, 1),
                       dtype="float32", test_size=128, checkpoint_every=10**9)
    problem = problem_of(base.to_dict())
    runs = []
    for init in ("random", "schwarz"):
        two = run_one(base, problem, model="dd", rank=4, init=init)
        local = 2 * int(intervals(4095, 256, 2).sizes.sum())
        r3 = max(4, round((two["parameters"] - 2 * 64 * 64) / local))
        runs += [two, run_one(base, problem, model="dd", rank=r3, levels=3, top_size=64, init=init)]
    return runs + [best_global(base, problem, max(1, round(runs[0]["parameters"] / (2 * 4095))), (0.01,))]


def projection(t_local, gflops, ranks=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536), per_rank=2**18,
               sub_per_rank=256, delta=4, r=8, r0=16, batch=16, top=64, alpha=2e-6, beta=10e9):
    """Per-rank step time on paper, weak scaling (1D, the scaling benchmark's configuration).

    ``t_local``: the measured level-0 step time of one rank (seconds); ``gflops``: the measured
    one-core rate of the dense products. Two levels: n_0 = 256 P - 1 coarse rows replicated:
    Allreduces of n_0 (B + 2 r0) 8 bytes (ring: 2 x bytes / beta + 2 log2(P) alpha) and
    5 n_0 r0 B multiply-adds of the coarse product and its gradients on every rank. Multilevel:
    coarse levels with 16 rows per coarse subdomain (one harmonic coarse row per subdomain in
    1D) until at most ``top`` rows remain; level l's rows are spread over min(P, N_l) ranks, so
    a rank's share of a level is at most the level-0 share; per level and step, a ghost
    exchange and a transfer (a few messages of delta B 8 bytes, counted as 6 latencies) and the
    local work of its rows (scaled from t_local by rows per rank); the top is one Allreduce of
    top (B + 2 r0) 8 bytes and 5 top r0 B multiply-adds.
    """
    rows = []
    ring = lambda nbytes, P: 0.0 if P == 1 else 2 * nbytes / beta + 2 * np.log2(P) * alpha  # noqa: E731
    t1_two = None
    for P in ranks:
        n0 = sub_per_rank * P - 1
        two = t_local + ring(n0 * (batch + 2 * r0) * 8, P) + 5 * n0 * r0 * batch * 2 / (gflops * 1e9)
        levels, n_l, extra = 2, n0, 0.0
        while n_l > top:
            N_l = max(1, n_l // 16)
            share = n_l / min(P, N_l)
            extra += t_local * share / per_rank + (6 * alpha if P > 1 else 0.0)
            n_l, levels = N_l - 1, levels + 1
        multi = t_local + extra + ring(top * (batch + 2 * r0) * 8, P) + 5 * top * r0 * batch * 2 / (gflops * 1e9)
        t1_two = t1_two or two
        t1_multi = rows[0]["multi_s"] if rows else multi
        rows.append({"P": P, "n": per_rank * P - 1, "two_s": two, "two_eff": t1_two / two, "levels": levels,
                     "multi_s": multi, "multi_eff": t1_multi / multi,
                     "two_allreduce_bytes": n0 * (batch + 2 * r0) * 8 if P > 1 else 0,
                     "multi_allreduce_bytes": top * (batch + 2 * r0) * 8 if P > 1 else 0})
    return rows


def measured_rate():
    """GFLOP/s of one core on the coarse product's shapes (n_0 x r0 times r0 x B)."""
    a, b = torch.randn(65536, 16, dtype=torch.float64), torch.randn(16, 16, dtype=torch.float64)
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    return 20 * 2 * 65536 * 16 * 16 / (time.perf_counter() - t0) / 1e9


def markdown(results):
    lines = ["**kappa(M A), Schwarz-initialised, full ranks** (H/h = 8, delta = 2, top level ~16)\n",
             "| problem | grid | coarse | n_0 | kappa 2-level | kappa 3-level | top size | params 2-level | "
             "params 3-level |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results.get("kappa", []):
        lines.append(f"| {r['problem']} | {r['grid']}^2 | {r['coarse']} | {r['n0']} | {r['kappa2']:.2f} | "
                     f"{r['kappa3']:.2f} | {r['n1_top']} | {r['params2']:,} | {r['params3']:,} |")
    lines += ["\n**Scale, serial** (r = 8, batch 16, float32, step = forward + backward + Adam)\n",
              "| dim | n | model | parameters | MFlop / apply | ms / step | model memory MiB | top |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results.get("scale", []):
        if not r.get("built"):
            lines.append(f"| {r['dim']} | {r['n']:,} | {r['model']} | {r.get('parameters', 0):,} | | not built "
                         f"({r.get('note', 'memory')}) | | |")
            continue
        lines.append(f"| {r['dim']} | {r['n']:,} | {r['model']} | {r['parameters']:,} | "
                     f"{r.get('apply_flops', 0) / 1e6:,.1f} | {1e3 * r['step_seconds']:.1f} | "
                     f"{r['memory_bytes'] / 2**20:.1f} | {r.get('top', '')} |")
    lines += ["\nFitted slopes of log(parameters), log(flops per apply) and log(step time) against log(n):\n",
              "| model | parameters | flops | step time |", "|---|---|---|---|"]
    for k, v in results.get("slopes", {}).items():
        lines.append(f"| {k} | {v['parameters']:.2f} | {v.get('flops', float('nan')):.2f} | {v['step']:.2f} |")
    if results.get("accuracy"):
        lines += ["\n**Accuracy at equal parameters** (laplace1d n = 4095, 256 subdomains, Fourier data)\n",
                  "| model | parameters | test error | reference |", "|---|---|---|---|"]
        for r in results["accuracy"]:
            c = r["config"]
            name = (f"global r={c['rank']}" if c["model"] == "global" else
                    f"DD {c.get('levels', 2)}-level r={c['rank']}, {c.get('init', 'random')} start")
            ref = (f"capacity {r['capacity']:.2e}" if "capacity" in r else f"Schwarz start {r['schwarz_start']:.2e}")
            lines.append(f"| {name} | {r['parameters']:,} | {r['test_error']:.2e} | {ref} |")
    if results.get("projection"):
        pr = results["projection"]
        lines += [f"\n**On paper: weak scaling to 65,536 ranks** (per rank 262,144 nodes, 256 subdomains, B = 16, "
                  f"r0 = 16; measured t_local = {1e3 * pr['t_local']:.0f} ms, {pr['gflops']:.1f} GFLOP/s on one core; "
                  "2 us latency, 10 GB/s)\n",
                  "| P | n | 2-level ms/step | efficiency | Allreduce B/step | levels | multilevel ms/step | efficiency | "
                  "Allreduce B/step |", "|---|---|---|---|---|---|---|---|---|"]
        for r in pr["rows"]:
            lines.append(f"| {r['P']:,} | {r['n']:,} | {1e3 * r['two_s']:.0f} | {100 * r['two_eff']:.0f} % | "
                         f"{r['two_allreduce_bytes']:,} | {r['levels']} | {1e3 * r['multi_s']:.0f} | "
                         f"{100 * r['multi_eff']:.0f} % | {r['multi_allreduce_bytes']:,} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    """Parameters and step time against n (1D, 2D), and the projected weak-scaling efficiency."""
    from pddattn.compare import pyplot
    plt = pyplot()
    if plt is None or not results.get("scale"):
        return
    fig, axes = plt.subplots(1, 5, figsize=(22, 3.8), constrained_layout=True)
    for k, dim in enumerate(("1D", "2D")):
        for model, marker in (("2-level", "o"), ("3-level", "s"), ("4-level", "^"), ("global", "x")):
            rows = [r for r in results["scale"] if r["dim"] == dim and r["model"] == model]
            axes[2 * k].loglog([r["n"] for r in rows], [r["parameters"] for r in rows], marker + "-", label=model)
            built = [r for r in rows if r.get("built")]
            axes[2 * k + 1].loglog([r["n"] for r in built], [1e3 * r["step_seconds"] for r in built], marker + "-",
                                   label=model)
        axes[2 * k].set(title=f"{dim}: parameters (2-level: counted where not built)", xlabel="n")
        axes[2 * k + 1].set(title=f"{dim}: ms per training step", xlabel="n")
    if results.get("projection"):
        rows = results["projection"]["rows"]
        axes[4].semilogx([r["P"] for r in rows], [100 * r["two_eff"] for r in rows], "o-", label="2 levels")
        axes[4].semilogx([r["P"] for r in rows], [100 * r["multi_eff"] for r in rows], "s-", label="multilevel")
        axes[4].set(title="on paper: weak-scaling efficiency", xlabel="ranks P", ylabel="%", ylim=(0, 105))
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--sizes-1d", default="16383,131071,1048575,8388607")
    ap.add_argument("--sides-2d", default="127,255,511,1023,2047")
    ap.add_argument("--max-gib", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: kappa, scale, accuracy, projection")
    ap.add_argument("--t-local", type=float, help="level-0 step seconds for the projection (default: "
                                                   "OUT/scaling.json's weak P=1 row)")
    ap.add_argument("--merge", action="store_true", help="keep the parts of OUT/multilevel.json not run now")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        grids, problems = [31], [("poisson2d", "const")]
        args.sizes_1d, args.sides_2d, args.steps = "4095,16383", "63,127", 30
    else:
        grids, problems = [63, 127], [("poisson2d", "const"), ("diffusion2d", "jump:1e4"),
                                      ("diffusion2d", "lognormal:1")]
    results = {}
    if args.merge and (out / "multilevel.json").exists():
        results = json.loads((out / "multilevel.json").read_text())
    if "kappa" not in skip:
        results["kappa"] = kappa_table(grids, problems)
    if "scale" not in skip:
        results["scale"], results["slopes"] = scale_table([int(v) for v in args.sizes_1d.split(",")],
                                                          [int(v) for v in args.sides_2d.split(",")], args.max_gib)
    if "accuracy" not in skip:
        results["accuracy"] = accuracy(args.steps)
    if "projection" not in skip:
        t_local = args.t_local
        scaling = Path(args.out) / "scaling.json"
        if t_local is None and scaling.exists():
            t_local = json.loads(scaling.read_text())["weak"][0]["step_seconds"]
        t_local = t_local or 0.3
        gflops = measured_rate()
        results["projection"] = {"t_local": t_local, "gflops": gflops, "rows": projection(t_local, gflops)}
    (out / "multilevel.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "multilevel.md").write_text(markdown(results))
    plot(results, out / "multilevel.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
