"""MPI scaling of distributed DD-attention training: strong and weak, with traffic counts.

For P = 1, 2 and 4 ranks (4 oversubscribes a 2-core machine: marked as
such), measure per training step (forward + backward + gradient reduction +
Adam; data generation timed separately): seconds, samples per second, and
the bytes and messages each rank sent, counted by the communication layer
and compared with the model. One application of M^-1 sends

    2 x delta x B x 8 bytes per neighbour (ghosts out, contributions back) + n_0 x B x 8 (Allreduce);

a training step sends 3 x delta x B x 8 per neighbour (the backward pass
needs the adjoint of the reverse exchange only: the data f needs no
gradient, so neither does the halo exchange nor the coarse Allreduce of
Phi^T f) and n_0 x B x 8 + 2 x n_0 x r0 x 8 in Allreduces (the coarse
gradients of Q_0 and K_0).

With more levels each coarse level adds its own ghost exchange and a transfer
(Phi^T x to the owners of the coarse rows and back), counted the same way,
and the replicated Allreduce shrinks to the top level's rows. The work per
rank and level is counted too (``level_flops``: the dense products of one
application, from the shapes the rank executes; a test checks it against
torch's FlopCounterMode).

Strong scaling: fixed n. Weak scaling: fixed nodes per rank, n up to about
10^6 in all. Every rank runs one torch thread at every P, so weak-scaling
efficiency T(1) / T(P) compares equal per-rank resources.

    python benchmarks/scaling.py --out benchmarks/results       # about 5 minutes
    python benchmarks/scaling.py --quick --out /tmp/s            # smoke test

The driver starts each configuration with a real mpirun; a worker prints one
JSON line from rank 0. Writes scaling.json, scaling.md, scaling.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(args):
    """Runs under mpirun: time training steps of one configuration."""
    import torch
    torch.set_num_threads(1)
    from pddattn.assembly import assemble
    from pddattn.models import model_from_architecture
    from pddattn.parallel.layout import make_layout
    from pddattn.train import TrainConfig, TrainData, make_optimizer, train_step
    cfg = TrainConfig.of(n=args.n, subdomains=args.N, overlap=args.delta, rank=args.r, coarse_rank=args.r0,
                      levels=args.levels, top_size=args.top_size, modes=16, batch=args.batch, steps=10**9, warmup=0,
                      test_size=1, dtype="float64")
    layout = make_layout(1, comm=_world())
    problem, arch, sampler, hierarchy = assemble(cfg)
    model = model_from_architecture(arch, layout, problem=problem, dtype=torch.float64, hierarchy=hierarchy)
    optimizer = make_optimizer(model, 1e-3)
    data = TrainData(cfg, model, layout, sampler)
    t0 = time.perf_counter()
    batches = [data.batch_at(s) for s in range(args.steps)]
    data_seconds = (time.perf_counter() - t0) / args.steps
    for s in range(3):  # warm-up
        train_step(model, optimizer, batches[s], s, cfg, layout)
    levels = model.level_stats() if hasattr(model, "level_stats") else []
    stats = [st for _, a, b in levels for st in (a, b)] + [getattr(layout, "stats", None)]
    apply_bytes = {"halo": 0, "allreduce": 0}
    if levels:  # one forward application, for the per-apply figure
        for st in stats:
            if st is not None:
                st.reset()
        with torch.no_grad():
            model.matvec(batches[0][0])
        apply_bytes = {k: sum(st.bytes[k] for st in stats if st is not None) for k in apply_bytes}
    for st in stats:
        if st is not None:
            st.reset()
    times = []
    for s, batch in enumerate(batches):
        layout.barrier()
        t = time.perf_counter()
        train_step(model, optimizer, batch, s, cfg, layout)
        times.append(time.perf_counter() - t)
    # The slowest rank sets the pace: take the max over ranks of each step.
    times = [layout.comm.allreduce(t, op=_max()) for t in times] if layout.world_size > 1 else times
    sent = {"halo": 0, "allreduce": 0}
    messages = {"halo": 0, "allreduce": 0}
    mpi_seconds = 0.0
    for st in stats:
        if st is not None:
            mpi_seconds += sum(st.seconds.values())
            for k in sent:
                sent[k] += st.bytes[k]
                messages[k] += st.messages[k]
    P, rank = layout.world_size, layout.world_rank
    model_bytes = model.traffic_model(args.batch) if P > 1 else {"halo": 0, "allreduce": 0}
    neighbours = len(model.plan.neighbours) if P > 1 else 0
    per_rank = {"rank": rank, "neighbours": neighbours, "apply_bytes": apply_bytes,
                "mpi_seconds_per_step": mpi_seconds / args.steps,
                "bytes_per_step": {k: v / args.steps for k, v in sent.items()},
                "messages_per_step": {k: v / args.steps for k, v in messages.items()},
                "model_bytes_per_step": model_bytes,
                "level_flops_per_apply": [[str(k), v] for k, v in model.level_flops(args.batch)]}
    gathered = layout.comm.gather(per_rank, root=0) if P > 1 else [per_rank]
    if rank == 0:
        step = statistics.median(times)
        print("RESULT " + json.dumps({
            "P": P, "n": args.n, "N": args.N, "delta": args.delta, "r": args.r, "r0": args.r0, "batch": args.batch,
            "levels": args.levels, "parameters": model.num_parameters(),
            "n_per_rank": args.n / P, "step_seconds": step, "samples_per_second": args.batch / step,
            "data_seconds_per_batch": data_seconds, "ranks": gathered}), flush=True)


def _world():
    from mpi4py import MPI
    return MPI.COMM_WORLD


def _max():
    from mpi4py import MPI
    return MPI.MAX


def _command(P, n, N, delta, r, r0, batch, steps, levels=2, top_size=64):
    return [shutil.which("mpirun"), "--oversubscribe", "-n", str(P), sys.executable, __file__, "--worker",
            "--n", str(n), "--N", str(N), "--delta", str(delta), "--r", str(r), "--r0", str(r0),
            "--batch", str(batch), "--steps", str(steps), "--levels", str(levels), "--top-size", str(top_size)]


def _result(p, P):
    out, err = p.communicate(timeout=1800)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"mpirun -n {P} failed:\n{out}\n{err}")
    result = json.loads(lines[0][7:])
    result["oversubscribed"] = P > (os.cpu_count() or 1)
    return result


def launch(P, *config, copies=1):
    """Run ``copies`` independent mpirun jobs at once; return the first one's result.

    copies=2 with P=1 is the control: two single-rank jobs that share the
    machine but not a single message, i.e. what the hardware allows.
    """
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(_command(P, *config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(copies)]
    results = [_result(p, P) for p in procs]
    return max(results, key=lambda r: r["step_seconds"])


def markdown(results):
    c = results["control"]
    lines = [f"Control: two independent single-rank jobs at once (no communication) take "
             f"{1e3 * c['step_seconds']:.1f} ms/step against {1e3 * results['weak'][0]['step_seconds']:.1f} ms "
             f"alone: {100 * results['weak'][0]['step_seconds'] / c['step_seconds']:.0f} % is all this machine "
             "gives two busy processes.", ""]
    for kind in [k for k in results if k.startswith(("strong", "weak")) and isinstance(results[k], list)]:
        rows = results[kind]
        base = rows[0]["step_seconds"]
        lines += [f"**{kind} scaling, {rows[0].get('levels', 2)} levels** ({'fixed n' if kind.startswith('strong') else 'fixed n per rank'}, "
                  f"B={rows[0]['batch']}, delta={rows[0]['delta']}, r={rows[0]['r']}, r0={rows[0]['r0']}, "
                  "float64, 1 thread per rank)", "",
                  "| P | n | N | ms / step | samples / s | efficiency | MPI ms/step | halo B/step (model) | "
                  "allreduce B/step (model) | msgs/step | B per apply | MFlop per apply by level |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            eff = base / row["step_seconds"] if kind.startswith("weak") else base / (row["P"] * row["step_seconds"])
            worst = max(row["ranks"], key=lambda q: q["bytes_per_step"]["halo"])
            note = " (oversubscribed)" if row["oversubscribed"] else ""
            lines.append(f"| {row['P']}{note} | {row['n']:,} | {row['N']} | {1e3 * row['step_seconds']:.1f} | "
                         f"{row['samples_per_second']:,.0f} | {100 * eff:.0f} % | "
                         f"{1e3 * max(q['mpi_seconds_per_step'] for q in row['ranks']):.2f} | "
                         f"{worst['bytes_per_step']['halo']:,.0f} ({worst['model_bytes_per_step']['halo']:,}) | "
                         f"{worst['bytes_per_step']['allreduce']:,.0f} ({worst['model_bytes_per_step']['allreduce']:,}) | "
                         f"{sum(worst['messages_per_step'].values()):.0f} | "
                         f"{sum(worst['apply_bytes'].values()):,} | {_flops_cell(row)} |")
        lines.append("")
    return "\n".join(lines)


def _flops_cell(row):
    """The busiest rank's dense-product MFlop per application, level by level (then the dense top)."""
    per_rank = [q.get("level_flops_per_apply") for q in row["ranks"]]
    if not all(per_rank):
        return ""
    busiest = max(per_rank, key=lambda lf: sum(v for _, v in lf))
    return " / ".join(f"{'top ' if k == 'top' else ''}{v / 1e6:.1f}" for k, v in busiest)


def plot(results, path):
    from pddattn.compare import pyplot
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, kind in zip(axes, ("strong", "weak")):
        rows = results[kind]
        if kind == "weak" and results.get("weak3"):
            ax.plot([r["P"] for r in results["weak3"]], [1e3 * r["step_seconds"] for r in results["weak3"]], "s-",
                    label="measured, 3 levels")
        P = [r["P"] for r in rows]
        ax.plot(P, [1e3 * r["step_seconds"] for r in rows], "o-", label="measured")
        base = rows[0]["step_seconds"] * 1e3
        ax.plot(P, [base / p if kind == "strong" else base for p in P], "k--", label="ideal")
        ax.set_xlabel("ranks P (4: oversubscribed on 2 cores)")
        ax.set_ylabel("ms per training step")
        ax.set_title(f"{kind} scaling")
        ax.set_xticks(P)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int)
    p.add_argument("--N", type=int)
    p.add_argument("--delta", type=int, default=4)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--r0", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--levels", type=lambda t: [int(v) for v in t.split(",")], default=[2, 3],
                   help="levels to weak-scale (driver: comma-separated, default 2,3; worker: one)")
    p.add_argument("--top-size", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.worker:
        args.levels = args.levels[0]
        return worker(args)
    per_rank, sub_per_rank, ranks = (2**18, 256, (1, 2, 4)) if not args.quick else (2**12, 8, (1, 2))
    steps = args.steps if not args.quick else 5
    results = {"strong": [], "weak": []}
    n_strong = ranks[-1] * per_rank - 1
    for P in ranks:
        results["strong"].append(launch(P, n_strong, ranks[-1] * sub_per_rank, args.delta, args.r, args.r0,
                                        args.batch, steps))
        for levels in sorted({2, *args.levels}):
            key = "weak" if levels == 2 else f"weak{levels}"
            results.setdefault(key, []).append(launch(P, P * per_rank - 1, P * sub_per_rank, args.delta, args.r,
                                                      args.r0, args.batch, steps, levels, args.top_size))
            print(f"P={P}: weak, {levels} levels: {1e3 * results[key][-1]['step_seconds']:.1f} ms/step", flush=True)
        print(f"P={P}: strong {1e3 * results['strong'][-1]['step_seconds']:.1f} ms/step", flush=True)
    results["control"] = launch(1, per_rank - 1, sub_per_rank, args.delta, args.r, args.r0, args.batch, steps,
                                copies=2)
    weak = results["weak"]
    results["weak_efficiency_1_to_2"] = weak[0]["step_seconds"] / weak[1]["step_seconds"]
    results["weak_efficiency_1_to_2_vs_control"] = results["control"]["step_seconds"] / weak[1]["step_seconds"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(results, indent=1))
    (out / "scaling.md").write_text(markdown(results))
    plot(results, out / "scaling.png")
    print(markdown(results))
    print(f"weak-scaling efficiency 1 -> 2 ranks: {100 * results['weak_efficiency_1_to_2']:.0f} % "
          f"({100 * results['weak_efficiency_1_to_2_vs_control']:.0f} % of what two independent jobs achieve)")


if __name__ == "__main__":
    main()
