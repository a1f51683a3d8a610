"""Training-step timing: DD attention against the global model of equal size.

One training step is forward + backward + Adam step on a batch that is
already in memory (data generation is timed separately, it is the same
for both models). Each model is timed in ``rounds`` alternating rounds of
``repeats`` steps after a warm-up, and we report the median round, so both
models see the same background load on a shared machine.

    pddattn bench --n 4095 --subdomains 64 --rank 8 --batch 64
"""
from __future__ import annotations

import statistics
import time

import torch

from .decomposition import intervals
from .operators import DDAttention, GlobalAttention
from .problems.laplace1d import FourierSampler
from .parallel.layout import SerialLayout
from .train import DTYPES, TrainConfig, make_optimizer, train_step

__all__ = ["time_steps", "step_time_comparison", "format_step_times"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, f, u, repeats, layout=None):
    """Seconds per training step (the training loop's own step), mean over ``repeats``."""
    layout = layout or SerialLayout()
    cfg = TrainConfig.of(steps=10**9, warmup=0)
    optimizer = make_optimizer(model, 1e-3)
    train_step(model, optimizer, (f, u), 0, cfg, layout)  # warm-up
    _sync(f.device)
    t0 = time.perf_counter()
    for step in range(repeats):
        train_step(model, optimizer, (f, u), step, cfg, layout)
    _sync(f.device)
    return (time.perf_counter() - t0) / repeats


def step_time_comparison(n=4095, N=64, delta=2, r=8, batch=64, repeats=50, dtype="float32", device="cpu",
                         rounds=5, levels=2):
    """Time DD(n, N, delta, r, levels) and the global model with the nearest parameter count."""
    dt, dev = DTYPES[dtype], torch.device(device)
    dd = DDAttention(intervals(n, N, delta), r, dtype=dt, device=dev, levels=levels)
    r_global = max(1, round(dd.num_parameters() / (2 * n)))
    glob = GlobalAttention(n, r_global, dtype=dt, device=dev)
    sampler = FourierSampler(n, n, seed=0)
    t0 = time.perf_counter()
    f, u = sampler.sample(batch)
    data_seconds = time.perf_counter() - t0
    f, u = (torch.as_tensor(a.T, dtype=dt).contiguous().to(dev) for a in (f, u))  # node-major
    times = {"dd": [], "global": []}
    for _ in range(rounds):
        for name, model in (("dd", dd), ("global", glob)):
            times[name].append(time_steps(model, f, u, repeats))
    result = {"n": n, "N": N, "delta": delta, "r": r, "levels": levels, "batch": batch, "dtype": dtype, "device": str(dev),
              "threads": torch.get_num_threads(), "data_seconds_per_batch": data_seconds, "models": {}}
    for name, model in (("dd", dd), ("global", glob)):
        step = statistics.median(times[name])
        result["models"][name] = {"parameters": model.num_parameters(), "rank": model.r,
                                  "step_seconds": step, "samples_per_second": batch / step,
                                  "rounds": times[name]}
    result["ratio_dd_over_global"] = result["models"]["dd"]["step_seconds"] / result["models"]["global"]["step_seconds"]
    return result


def format_step_times(result):
    lines = [f"training step (forward + backward + Adam), n={result['n']}, batch={result['batch']}, "
             f"{result['dtype']}, {result['device']}, {result['threads']} threads",
             "| model | rank | parameters | ms / step | samples / s |", "|---|---|---|---|---|"]
    for name, m in result["models"].items():
        label = (f"dd (N={result['N']}, delta={result['delta']}, levels={result.get('levels', 2)})"
                 if name == "dd" else "global")
        lines.append(f"| {label} | {m['rank']} | {m['parameters']:,} | {1e3 * m['step_seconds']:.2f} | "
                     f"{m['samples_per_second']:,.0f} |")
    lines.append(f"\nDD / global step time: {result['ratio_dd_over_global']:.2f} "
                 f"(median of {len(result['models']['dd']['rounds'])} alternating rounds)")
    return "\n".join(lines)
