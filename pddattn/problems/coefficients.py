"""Coefficient fields k(x) > 0 on the unit interval or square, from a string spec.

    const           k = 1
    smooth:C        k = C^s(x), s smooth in [0, 1]: values in [1, C]
    jump:C          channels of conductivity C in a background of 1 (1D: intervals;
                    2D: horizontal strips crossing the whole domain)
    lognormal:S     k = exp(S g(x)), g a seeded Gaussian random field of unit variance
                    (random Fourier features, correlation length 0.1)
    darcy           the FNO paper's Darcy field (Li et al. 2021): 12 where a Gaussian field
                    of covariance (-Laplace + 9 I)^-2 (Neumann, zero mean) is >= 0, else 3;
                    the field is its cosine series cos(pi k1 x) cos(pi k2 y) with seeded
                    normal weights (pi^2 |k|^2 + 9)^-1, truncated to 64 modes per axis

Fields are functions of the coordinates, evaluated wherever a stencil needs
them (cell or edge midpoints), and reproducible from (spec, seed).
"""
from __future__ import annotations

import numpy as np

__all__ = ["COEFFICIENTS", "parse_coefficient", "coefficient_field"]

COEFFICIENTS = ("const", "smooth", "jump", "lognormal", "darcy")
_CHANNELS, _CHANNEL_WIDTH, _FEATURES, _CORRELATION = 4, 1.0 / 16, 256, 0.1
DARCY_MODES, DARCY_TAU, DARCY_HIGH, DARCY_LOW = 64, 3.0, 12.0, 3.0


def parse_coefficient(spec):
    """Split 'kind:value' into (kind, value), raising ValueError for a bad spec."""
    kind, _, text = str(spec).partition(":")
    if kind not in COEFFICIENTS:
        raise ValueError(f"unknown coefficient {spec!r}; use const, smooth:C, jump:C, lognormal:S or darcy")
    if kind in ("const", "darcy"):
        if text:
            raise ValueError(f"coefficient {kind!r} takes no value, got {spec!r}")
        return kind, None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"coefficient {spec!r} needs a number after ':' (e.g. {kind}:100)") from None
    if kind in ("smooth", "jump") and not (np.isfinite(value) and value > 0):
        raise ValueError(f"coefficient contrast must be a positive number, got {spec!r}")
    if kind == "lognormal" and not (np.isfinite(value) and value >= 0):
        raise ValueError(f"lognormal standard deviation must be >= 0, got {spec!r}")
    return kind, value


def coefficient_field(spec, seed=0, dim=1):
    """k as a function of an (m, dim) array of points in [0, 1]^dim, returning (m,) values."""
    kind, value = parse_coefficient(spec)
    rng = np.random.default_rng([int(seed), 7919])
    if kind == "const":
        return lambda x: np.ones(len(x))
    if kind == "darcy":
        return _darcy(rng, dim)
    if kind == "smooth":
        phase = rng.uniform(0, 1, dim)

        def smooth(x):
            s = np.prod(np.sin(2 * np.pi * (x + phase)), axis=1)
            return value ** (0.5 * (1.0 + s))
        return smooth
    if kind == "jump":
        # Channel centres spread over (0.1, 0.9) with random offsets; across y in 2D.
        centres = (np.arange(_CHANNELS) + rng.uniform(0.25, 0.75, _CHANNELS)) / _CHANNELS * 0.8 + 0.1
        axis = dim - 1

        def jump(x):
            inside = (np.abs(x[:, axis, None] - centres[None, :]) < _CHANNEL_WIDTH / 2).any(axis=1)
            return np.where(inside, value, 1.0)
        return jump
    w = rng.standard_normal((_FEATURES, dim)) / _CORRELATION
    phi = rng.uniform(0, 2 * np.pi, _FEATURES)

    def lognormal(x):
        g = np.sqrt(2.0 / _FEATURES) * np.cos(x @ w.T + phi).sum(axis=1)
        return np.exp(value * g)
    return lognormal


def _darcy(rng, dim):
    """The thresholded Gaussian field of ``darcy`` (module docstring) as a function of points."""
    k = np.arange(DARCY_MODES)
    squares = sum(np.meshgrid(*([k**2] * dim), indexing="ij"))
    weights = rng.standard_normal((DARCY_MODES,) * dim) / (np.pi**2 * squares + DARCY_TAU**2)
    weights.flat[0] = 0.0  # zero mean, as the FNO generator's
    if dim == 1:
        return lambda x: np.where(np.cos(np.pi * x[:, :1] * k) @ weights >= 0, DARCY_HIGH, DARCY_LOW)

    def darcy(x):
        # Stencil points lie on a few lines of each axis: cosines per distinct coordinate, then one row each.
        (xs, ix), (ys, iy) = (np.unique(x[:, axis], return_inverse=True) for axis in (0, 1))
        along_x = np.cos(np.pi * xs[:, None] * k) @ weights        # (distinct x, modes of y)
        g = (along_x[ix.ravel()] * np.cos(np.pi * ys[:, None] * k)[iy.ravel()]).sum(axis=1)
        return np.where(g >= 0, DARCY_HIGH, DARCY_LOW)
    return darcy
