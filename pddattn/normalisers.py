"""Pointwise Gaussian normalisers around a field-to-field network (a -> u on an s x s grid).

The FNO paper's Darcy script and the Galerkin Transformer's both shift and
scale the coefficient a and the solution u *per grid point* by their mean
and standard deviation over the training fields (each script's
``UnitGaussianNormalizer``, eps 1e-5): the network sees a normalised a and
answers a normalised u, so the mean field and the boundary's u = 0 are
built into the output.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PointwiseNormalised", "EPS"]

EPS = 1e-5  # both scripts' UnitGaussianNormalizer


class PointwiseNormalised(nn.Module):
    """a (B, s, s) -> u (B, s, s) through ``network`` between the paper's normalisers: a and u each shifted
    and scaled per grid point by the training fields' mean and standard deviation (``fit``). On another
    grid the normalisers are interpolated bilinearly (resolution transfer)."""

    def __init__(self, side):
        super().__init__()
        for name in ("a_mean", "a_std", "u_mean", "u_std"):
            self.register_buffer(name, torch.zeros(side, side))

    def network(self, x):
        raise NotImplementedError

    def fit(self, a, u, pointwise=True):
        """The normalisers from the training fields a, u (N, s, s). ``pointwise=False``: one number each
        instead (a by its mean and deviation over all points, u by its RMS), as the benchmark's other models
        are normalised."""
        if pointwise:
            stats = (a.mean(0), a.std(0), u.mean(0), u.std(0))
        else:
            stats = (a.mean(), a.std() - EPS, 0.0, u.pow(2).mean().sqrt() - EPS)
        for name, value in zip(("a_mean", "a_std", "u_mean", "u_std"), stats):
            getattr(self, name).copy_(torch.as_tensor(value).expand_as(getattr(self, name)))
        return self

    def _on(self, name, side):
        """A normaliser on a side x side grid (bilinear between the training grid's points)."""
        x = getattr(self, name)
        if x.shape[-1] == side:
            return x
        return F.interpolate(x[None, None], size=(side, side), mode="bilinear", align_corners=True)[0, 0]

    def forward(self, a):
        side = a.shape[-1]
        out = self.network((a - self._on("a_mean", side)) / (self._on("a_std", side) + EPS))
        return out * (self._on("u_std", side) + EPS) + self._on("u_mean", side)

    def num_parameters(self):
        """Reals, a complex weight counted twice (the paper counts it once); the normalisers are not trained."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters())
