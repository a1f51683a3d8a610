"""How the Darcy benchmark's models are trained: the shared loop and the recipes it runs.

Every model goes through ``train``: the same shuffles, the same epochs, a curve of train and test error.
What a recipe may change is stated in ``Recipe``. The benchmark's own (``COMMON``) is the one stated budget
for all: batches of 20, Adam (lr 1e-3, weight decay 1e-4), the learning rate halved every epochs / 5
epochs (the FNO paper's schedule, scaled to the budget), the relative L2 error averaged over the batch.
Two baselines are also run by their authors' scripts, to see whether a gap to their published figure is
theirs or the benchmark's:

  FNO_PAPER  the FNO paper's fourier_2d.py: the same, the loss summed over the batch
  CAO        the Galerkin Transformer's ex2_darcy.py: batches of 4, Adam without weight decay, a one-cycle
             learning rate (up to 1e-3 over 30 % of the steps, from and down to 1e-7, stepped every
             batch), the loss plus 0.5 x an H1 term (``h1_term``), the gradient clipped to norm 0.99
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

__all__ = ["Recipe", "COMMON", "FNO_PAPER", "CAO", "relative", "count", "h1_term", "train"]

LR = 1e-3


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a model's training may differ in; everything else (data, epochs, shuffles) is the benchmark's."""

    batch: int = 20
    decay: float = 1e-4  # Adam's weight decay
    schedule: str = "step"  # "step": halved every epochs / 5 epochs; "onecycle": Cao's, stepped per batch
    reduction: str = "mean"  # of the batch's relative errors: "mean", or "sum" (weight decay weighs less)
    gamma: float = 0.0  # weight of the H1 term
    clip: float | None = None  # the gradient's norm is clipped to this


COMMON = Recipe()
FNO_PAPER = Recipe(reduction="sum")
CAO = Recipe(batch=4, decay=0.0, schedule="onecycle", gamma=0.5, clip=0.99)


def relative(pred, u):
    return (pred - u).flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1)


def count(module):
    """Trained reals (a complex weight twice), buffers such as normalisers not among them."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters())


def _gradient(u, h):
    """(B, s-2, s-2, 2): central differences of u (B, s, s) at the interior points, spacing 2 h."""
    return torch.stack([(u[:, 2:, 1:-1] - u[:, :-2, 1:-1]), (u[:, 1:-1, 2:] - u[:, 1:-1, :-2])], dim=-1) / (2 * h)


def h1_term(pred, u, a, gamma):
    """Cao's H1 term (his WeightedL2Loss2d with the regulariser, K = a), averaged over the batch:

        sqrt(gamma h mean_interior |a (D u - D pred)|^2 / (2 mean_all a |D u|^2)),   h = 1 / s,

    with D the central difference of spacing 2 h on the s x s grid (u padded by zeros to give D u at every
    point for the denominator). His script takes D u from the 421 x 421 solution before subsampling; these
    data keep only the subsampled u, so D u here is the difference D applies to the prediction too.
    """
    h = 1.0 / u.shape[-1]
    du = _gradient(torch.nn.functional.pad(u, (1, 1, 1, 1)), h)  # (B, s, s, 2)
    norm = 2 * (a[..., None] * du.square()).mean(dim=(1, 2, 3))
    misfit = (a[:, 1:-1, 1:-1, None] * (du[:, 1:-1, 1:-1] - _gradient(pred, h))).square().mean(dim=(1, 2, 3))
    return (gamma * h * misfit / norm).sqrt().mean()


def _schedule(optimizer, recipe, epochs, steps):
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, div_factor=1e4, final_div_factor=1e4,
                                                   pct_start=0.3, steps_per_epoch=steps, epochs=epochs)
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 5), gamma=0.5)
    raise ValueError(f"unknown schedule {recipe.schedule!r}: use step or onecycle")


def _step(forward, pick, a, u, optimizer, recipe, module):
    """One batch: the loss's backward pass and Adam's step; the batch's mean relative error."""
    target = u[pick].to(torch.float64)
    pred = forward(pick)
    errors = relative(pred, target)
    loss = errors.sum() if recipe.reduction == "sum" else errors.mean()
    if recipe.gamma:
        loss = loss + h1_term(pred, target, a[pick].to(pred.device, torch.float64), recipe.gamma)
    optimizer.zero_grad()
    loss.backward()
    if recipe.clip is not None:
        torch.nn.utils.clip_grad_norm_(module.parameters(), recipe.clip)
    optimizer.step()
    return float(errors.detach().mean())


def train(name, forward, module, a, u, epochs, evaluate, log, state=None, recipe=COMMON, until=None):
    """The shared loop: the same shuffles for every model; the curve of train and test error per epoch.

    With ``state`` (a TrainingState) every epoch is saved and a saved run resumes at its next epoch.
    ``until``: stop after that many epochs of the ``epochs``-epoch budget (its schedule unchanged), for short
    comparisons on the budget's first epochs."""
    optimizer = torch.optim.Adam(module.parameters(), lr=LR, weight_decay=recipe.decay)
    schedule = _schedule(optimizer, recipe, epochs, math.ceil(len(a) / recipe.batch))
    rng, curve = np.random.default_rng(0), []
    saved = state.load(name) if state else None
    if saved:
        module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        rng.bit_generator.state, curve = saved["rng"], saved["curve"]
        if "torch_rng" in saved:  # dropout's draws (gt-cao) go on as they would have
            torch.set_rng_state(saved["torch_rng"])
        log(f"{name}: resumed after epoch {len(curve)} of {epochs} ({curve[-1]['seconds']:.0f} s so far)")
    t0 = time.perf_counter() - (curve[-1]["seconds"] if curve else 0.0)
    for epoch in range(len(curve), epochs if until is None else min(until, epochs)):
        order, losses = rng.permutation(len(a)), []
        for start in range(0, len(a), recipe.batch):
            losses.append(_step(forward, order[start:start + recipe.batch], a, u, optimizer, recipe, module))
            if recipe.schedule == "onecycle":
                schedule.step()
        if recipe.schedule == "step":
            schedule.step()
        curve.append({"epoch": epoch + 1, "train": float(np.mean(losses)), "test": evaluate(),
                      "seconds": time.perf_counter() - t0})
        if state:
            state.save(name, model=module.state_dict(), optimizer=optimizer.state_dict(),
                       schedule=schedule.state_dict(), rng=rng.bit_generator.state, curve=curve,
                       torch_rng=torch.get_rng_state(), parameters=count(module))
        log(f"{name} epoch {epoch + 1}: train {curve[-1]['train']:.4f} test {curve[-1]['test']:.4f} "
            f"({curve[-1]['seconds']:.0f} s)")
    return curve
