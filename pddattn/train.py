"""Training: one short loop for the serial and the MPI run alike.

    cfg = TrainConfig.of(model="dd", n=1023, subdomains=32, overlap=2, rank=8)
    result = train(cfg, out="runs/dd")            # serial
    # mpirun -n 4 pddattn train --model dd ...     # the same loop, distributed

Every step draws a fresh batch (the samplers are exact and cheap), so the
data for step s is a function of (seed, s) alone: a resumed run, or a run on
another rank count, sees the same data. Each rank evaluates only its own
nodes; the layout supplies the reductions (identity when serial).

Optimiser: Adam with a *scale-aware* learning rate. Each factor's lr is
``lr * natural_scale`` (see ``natural_scales`` on the models), so ``lr`` is
the relative change per step and one value suits the global model, the
local blocks and the coarse block, whose entries differ by orders of
magnitude. Linear warm-up, then cosine decay to zero at ``steps``. beta2 =
0.95 rather than 0.999: with the slow second-moment average the demo's
test error jumped 4-11x three times before the decay settled it; with 0.95
the largest jump is 1.4x and both models end lower (README, "Stable
training").

Loss (``loss="error"``): mean over the batch of ||M^-1 f - u||^2 / ||u||^2.
Metric: mean relative L2 error ||M^-1 f - u|| / ||u|| over a held-out test
set. For preconditioning, ``loss="condition"`` minimises an estimate of
log kappa(M A) instead (see spectrum.py; symmetric DD models on one domain
rank), logs that estimate as ``condition`` next to the test error, and ends
on the evaluated model with the lowest estimate (a step that raised kappa
is not kept: the Schwarz start is a strong preconditioner to lose).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .assembly import assemble, data_kind
from .config import DTYPES, LOSSES, TrainConfig, device_missing
from .errors import ConfigurationError
from .fno import WEIGHT_DECAY
from .memory import check_memory
from .models import model_from_architecture
from .parallel.layout import SerialLayout, block_range
from .problems.samplers import evaluate_rows
from .spectrum import condition_loss, condition_number, fit_probe

__all__ = ["TrainConfig", "TrainData", "train", "train_step", "fit_condition", "make_optimizer", "lr_factor",
           "relative_errors", "DTYPES", "LOSSES", "device_missing"]  # the config's names, re-exported

TRAIN_STREAM, TEST_STREAM = 0, 1
def lr_factor(step, cfg):
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``steps``."""
    if cfg.optim.steps == 0:
        return 0.0
    warm = min(1.0, (step + 1) / cfg.optim.warmup) if cfg.optim.warmup else 1.0
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.optim.steps) / cfg.optim.steps))


def make_optimizer(model, lr, beta2=0.95):
    """Adam (betas 0.9, beta2) with one parameter group per factor at lr * natural scale.

    The fused implementation (one kernel for all groups; 2-3x faster than the
    loop here) where the device has it. Adam is elementwise, so a rank's
    slice of a factor takes exactly the serial model's step either way.
    """
    scales = model.natural_scales()
    groups = [{"params": [p], "lr": lr * scales[name], "base_lr": lr * scales[name], "name": name}
              for name, p in model.named_parameters()]
    if getattr(model, "recipe", None) == "fno":  # its own recipe: AdamW, absolute lr (see fno.py)
        return torch.optim.AdamW(groups, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY)
    device = next(model.parameters()).device.type
    return torch.optim.Adam(groups, betas=(0.9, beta2), fused=device in ("cpu", "cuda"))


def relative_errors(y, u, layout):
    """Per-sample (||y - u||^2 partial, ||u||^2 global) with the norms summed over the domain group.

    ``y`` and ``u`` are node-major (m, b) on this rank's nodes. The numerator
    keeps its autograd graph (the rank's own part of the loss); the
    denominator is a constant.
    """
    num = (y - u).square().sum(0)
    den = layout.domain_sum(u.detach().square().sum(0))
    return num, den


class TrainData:
    """This rank's slice of every batch: its own nodes, its replica's samples.

    Tensors are node-major (nodes x samples), the layout the operators work in.
    """

    def __init__(self, cfg, model, layout, sampler):
        self.sampler = sampler
        self.rows = model.own_rows
        self.dtype, self.device = DTYPES[cfg.run.dtype], torch.device(cfg.run.device)
        self.batch, self.layout = cfg.optim.batch, layout
        pairs = getattr(sampler, "pairs", None)
        self.test_size = cfg.data.test_size if pairs is None else pairs.test_count  # a pairs file brings its test set
        if pairs is not None:
            _check_pairs(pairs, self.rows, layout)
        test_rows = block_range(self.test_size, layout.data_size, layout.replica)
        coef = self.sampler.coefficients(self.test_size, TEST_STREAM, 0)[test_rows.start:test_rows.stop]
        self.test = self._tensors(coef)

    def _tensors(self, coef):
        f, u = evaluate_rows(self.sampler, coef, self.rows, self.layout.domain_comm)
        as_t = lambda a: torch.from_numpy(a).to(self.dtype).T.contiguous().to(self.device)  # noqa: E731
        return as_t(f), as_t(u)

    def batch_at(self, step):
        rows = self.layout.samples(self.batch)
        coef = self.sampler.coefficients(self.batch, TRAIN_STREAM, step)[rows.start:rows.stop]
        return self._tensors(coef)


def first_difference(a, b, where="architecture"):
    """(dotted key, a's value, b's value) of the first place two nested dicts differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{where}.{k}")
        return None
    return where, a, b


def _short(value, width=40):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _check_pairs(pairs, rows, layout):
    """One line on every rank when any rank's nodes of the pairs hold a NaN or inf, or a u is zero."""
    bad = pairs.first_bad(rows)
    if layout.world_size > 1:
        bad = min((b for b in layout.comm.allgather(bad) if b), default=None, key=lambda b: (b[1], b[0]))
    if bad:
        raise ConfigurationError(f"--data {pairs.path}: {bad[0]} holds a NaN or inf (sample {bad[1]}); "
                                 f"the pairs must be finite")
    for name, norms in pairs.squared_norms(rows).items():
        zero = np.flatnonzero(layout.domain_sum(norms) == 0)
        if len(zero):  # its relative error is 0 / 0
            raise ConfigurationError(f"--data {pairs.path}: {name} is zero in {len(zero)} samples (the first: "
                                     f"sample {zero[0]}); relative errors need u != 0")


def evaluate(model, data, layout, chunk=256):
    """Mean relative L2 test error over the whole test set (all ranks agree)."""
    f, u = data.test
    total = 0.0
    with torch.no_grad():
        for s in range(0, f.shape[1], chunk):
            num, den = relative_errors(model.matvec(f[:, s:s + chunk]), u[:, s:s + chunk], layout)
            total += (layout.domain_sum(num) / den).sqrt().sum().item()
    return float(layout.data_sum(np.array([total]))[0]) / data.test_size


class _Log:
    """JSONL log and progress bar, on the root rank only."""

    def __init__(self, out, layout, cfg, start, resume):
        self.root = layout.is_root
        self.rows = []
        self.path = Path(out) / "log.jsonl" if out else None
        if self.root and self.path is not None:
            kept = []
            if resume and self.path.exists():  # the run continues at `start`: that row is redone
                kept = [line for line in self.path.read_text().splitlines()
                        if line.strip() and json.loads(line)["step"] < start]
            self.path.write_text("".join(line + "\n" for line in kept))
            self.rows = [json.loads(line) for line in kept]
        self.bar = None
        if self.root and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=cfg.optim.steps, initial=start, desc=cfg.model.kind, dynamic_ncols=True, leave=False)

    def record(self, row):
        if not self.root:
            return
        self.rows.append(row)
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if self.bar is not None:
            self.bar.set_postfix(test=f"{row['test_error']:.2e}", refresh=False)

    def advance(self, steps=1):
        if self.bar is not None:
            self.bar.update(steps)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def train(cfg, out=None, resume=False, layout=None, problem=None, hierarchy=None):
    """Train one model; return (model, summary) with the evaluation history in the summary.

    Parameters
    ----------
    cfg : TrainConfig
    out : str or Path, optional
        Folder for log.jsonl and checkpoint.pt (created if missing).
    resume : bool
        Continue from ``out``/checkpoint.pt: same model, optimiser state,
        step and clock; data and schedule depend only on the step.
    layout : Layout, optional
        The MPI layout (default: serial).
    problem : Problem, optional
        The operator, when the caller has built it already (it must be the one ``cfg`` names).
    hierarchy : Hierarchy, optional
        A DD model's levels, when the caller has built them (on ``problem``, as ``cfg`` names them).
    """
    cfg.validate()
    layout = layout or SerialLayout(cfg.run.data_parallel)
    check_memory(cfg, layout)
    torch.manual_seed(cfg.run.seed)
    problem, arch, sampler, hierarchy = assemble(cfg, problem, layout, hierarchy)
    cfg = cfg.as_run(problem)
    model = model_from_architecture(arch, layout, problem=problem, dtype=DTYPES[cfg.run.dtype], device=cfg.run.device,
                                    init=cfg.model.init, init_scale=cfg.model.init_scale, seed=cfg.run.seed, hierarchy=hierarchy)
    optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.beta2)
    ckpt_path = Path(out) / "checkpoint.pt" if out else None
    if out and layout.is_root:
        Path(out).mkdir(parents=True, exist_ok=True)
    start, elapsed = 0, 0.0
    if resume:
        if ckpt_path is None:
            raise ConfigurationError("--resume needs --out, the folder of the run to continue")
        payload = checkpoint.read_collective(ckpt_path, layout)
        stored = checkpoint.architecture_of(payload)
        if stored != model.config():
            where, old, new = first_difference(stored, model.config())
            raise ConfigurationError(f"checkpoint {ckpt_path} was made for {where} = {_short(old)}, this "
                                     f"configuration has {_short(new)}" + (" (the matrix file has changed)"
                                                                           if where.endswith(("sha256", "checksum")) else ""))
        checkpoint.restore(payload, model, optimizer)
        start, elapsed = payload["progress"]["step"], payload["progress"]["elapsed"]
    layout.barrier()
    data = TrainData(cfg, model, layout, sampler)
    log = _Log(out, layout, cfg, start, resume)
    params = model.num_parameters()
    losses, error, kappa, step = [], float("nan"), float("nan"), start
    best = None  # (kappa, step, parameters) of the best evaluated model: condition loss only

    probe = None

    def save():
        if ckpt_path is not None:
            progress = {"step": step, "elapsed": elapsed, "test_error": error, "probe": probe}
            checkpoint.save(ckpt_path, model, optimizer, progress, cfg.to_dict(), layout)

    try:
        while True:  # evaluate, maybe stop, step
            if step % cfg.run.eval_every == 0 or step == cfg.optim.steps:
                error = evaluate(model, data, layout)
                train_loss = float(np.mean(losses)) if losses else None
                row = {"step": step, "time": elapsed, "train_loss": train_loss, "test_error": error,
                       "parameters": params, "lr": cfg.optim.lr * lr_factor(step, cfg)}
                if cfg.optim.loss == "condition":
                    row["condition"] = kappa = condition_number(model)
                    if best is None or kappa < best[0]:
                        best = (kappa, step, {k: p.detach().clone() for k, p in model.named_parameters()})
                log.record(row)
                losses = []
                if layout.bcast(step >= cfg.optim.steps or error <= cfg.optim.target):
                    break
            t0 = time.perf_counter()
            batch = data.batch_at(step) if cfg.optim.loss == "error" else None  # the condition loss draws its own
            loss = train_step(model, optimizer, batch, step, cfg, layout)
            elapsed += time.perf_counter() - t0
            losses.append(loss)
            step += 1
            log.advance()
            if step % cfg.run.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if layout.world_size == 1:  # keep what was done; under MPI the job is torn down anyway
            save()
        raise
    finally:
        log.close()
    if best is not None and best[0] < kappa:
        _load_parameters(model, best[2])
        error, kappa = evaluate(model, data, layout), best[0]
    # DDAttentionPC checks a model against its operator with it (none without a matrix)
    probe = fit_probe(model, problem, layout) if problem.has_operator and cfg.model.kind != "fno" else None
    save()
    summary = {"model": cfg.model.kind, "parameters": params, "steps": step, "time": elapsed, "test_error": error,
               "history": log.rows, "data": data_kind(cfg, problem), "probe": probe}
    if cfg.optim.loss == "condition":
        summary["condition"], summary["best_step"] = kappa, best[1]
    model.train_data = data  # the test set, for reference errors (capacity, Schwarz start)
    return model, summary


def fit_condition(model, cfg, layout=None):
    """Condition-loss training of a model built already, in place (DDAttentionPC's setUp).

    The steps of :func:`train` (``cfg``: steps, lr, schedule, seed) on the
    model's own layout, serial or distributed, with kappa(M A) estimated at
    the start and the end only (80 products with M A each, a step takes
    40); the better of the two models is kept, so it never returns a worse
    preconditioner. Returns {'steps', 'start', 'end', 'seconds'}.
    """
    layout = layout or SerialLayout()
    t0 = time.perf_counter()
    start = condition_number(model)
    initial = {k: p.detach().clone() for k, p in model.named_parameters()}
    optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.beta2)
    for step in range(cfg.optim.steps):
        train_step(model, optimizer, None, step, cfg, layout)
    end = condition_number(model)
    if end > start:
        _load_parameters(model, initial)
    return {"steps": cfg.optim.steps, "start": start, "end": min(start, end), "seconds": time.perf_counter() - t0}


def _load_parameters(model, values):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(values[name])


def train_step(model, optimizer, batch, step, cfg, layout):
    """One optimiser step; returns the global batch loss."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * lr_factor(step, cfg)
    if cfg.optim.loss == "condition":  # each replica its own Lanczos start, distributed over its domain group
        loss, _ = condition_loss(model, seed=(cfg.run.seed * 1_000_003 + step) * 64 + layout.replica)
    else:
        f, u = batch
        num, den = relative_errors(model.matvec(f), u, layout)
        # This rank's part of its replica's mean loss; the domain group's parts sum to
        # it, and sync_gradients averages the replicas.
        per_sample = num / den if getattr(model, "recipe", None) != "fno" else (num / den).sqrt()  # FNO: relative L2
        loss = per_sample.sum() / f.shape[1]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    layout.sync_gradients(model)
    optimizer.step()
    return float(layout.data_sum(layout.domain_sum(np.array([loss.item()])))[0]) / layout.data_size
