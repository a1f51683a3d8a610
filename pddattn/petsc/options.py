"""The options of DDAttentionPC (under the PC's prefix): their table, defaults and one parser.

``parse_options(prefix)`` reads every option once, checks each (a bad value
is one ConfigurationError line, the same on every rank) and resolves
``auto`` choices, so the PC's set-up reads a plain dict.
"""
from __future__ import annotations

from .corrections import CORRECTIONS
from ..errors import ConfigurationError
from ..hierarchy import LEVEL_COARSE

__all__ = ["OPTIONS", "parse_options"]

# (name, default, help) of every option, as -help prints them.
OPTIONS = [
    ("pddattn_model", "", "a trained pddattn checkpoint (none: build from the operator)"),
    ("pddattn_grid", "", "the operator's 2D grid nx x ny for a generated-factor model without a DMDA (default: "
                         "square)"),
    ("pddattn_subdomains", "", "4x4 (boxes of the DMDA grid) or 16 (algebraic); default one per rank"),
    ("pddattn_overlap", 1, "overlap delta in layers of the grid / graph of A"),
    ("pddattn_coarse", "harmonic", "coarse space: harmonic (GDSW-type), q1, hat, nicolaides or none"),
    ("pddattn_rank", 0, "local rank r (0: full, classical two-level additive Schwarz)"),
    ("pddattn_train_steps", 0, "condition-loss training steps on this operator during setUp"),
    ("pddattn_train_lr", 1e-4, "learning rate of that training (scale-aware Adam)"),
    ("pddattn_levels", 2, "levels: 2 = dense coarse block; L > 2 = multilevel DD attention"),
    ("pddattn_top_size", 0, "levels > 2: target size of the top level; 0: coarse subdomains of a fixed size "
                            "(the top grows with n, factored; bounded iterations)"),
    ("pddattn_level_coarse", "harmonic", "coarse space of the coarse levels when levels > 2: harmonic or nicolaides"),
    ("pddattn_coarse_correction", "auto", "additive (the paper's M^-1), balanced: P0 + (I - P0 A) M1 (I - A P0), or "
                                          "multiplicative: a two-grid V-cycle, Chebyshev-Schwarz smoothing around "
                                          "P0 (exact two-level PC only); auto: multiplicative for the exact "
                                          "two-level PC, balanced for more levels or training, additive for a "
                                          "stored model (what it was trained as)"),
    ("pddattn_chebyshev_degree", 2, "multiplicative: Chebyshev steps of each smoothing on M1 A (2 local solves "
                                    "each; 1: Richardson)"),
    ("pddattn_smoother", "auto", "added to a rank-deficient (singular) model: jacobi, M^-1 + D^-1 (SPD); auto: "
                                 "jacobi only when the model is rank-deficient; none: the model alone"),
    ("pddattn_precision", "float64", "arithmetic of the learned factors' products in apply: float64 or float32 "
                                     "(half the bytes; sparse solves, Krylov vectors and A stay float64)"),
    ("pddattn_factors", "sparse", "full-rank untrained parts: sparse (a sparse Cholesky of the A_i and of the "
                                  "top block, CHOLMOD where PETSc has SuiteSparse) or dense (the Schwarz factors Q_i Q_i^T = A_i^-1)"),
]


def _default(name):
    return next(d for n, d, _ in OPTIONS if n == f"pddattn_{name}")


# The options whose value is one of a few words, and those words.
CHOICES = {"coarse_correction": CORRECTIONS + ("auto",), "level_coarse": LEVEL_COARSE,
           "smoother": ("auto", "jacobi", "none"), "precision": ("float64", "float32"),
           "factors": ("sparse", "dense")}
INTEGERS = ("overlap", "rank", "train_steps", "levels", "top_size", "chebyshev_degree")


def parse_options(prefix):
    """{name: value} of every option under ``prefix``, checked, with ``auto`` resolved."""
    from petsc4py import PETSc
    o = PETSc.Options(prefix)
    values = {"prefix": prefix, "model": o.getString("pddattn_model", ""),
              "subdomains": o.getString("pddattn_subdomains", ""), "grid": o.getString("pddattn_grid", ""), "coarse": o.getString("pddattn_coarse", "harmonic")}
    for name, choices in CHOICES.items():
        value = o.getString(f"pddattn_{name}", _default(name))
        if value not in choices:
            raise ConfigurationError(f"-{prefix}pddattn_{name} must be {', '.join(choices[:-1])} or {choices[-1]}, "
                                     f"got {value!r}")
        values[name] = value
    values["correction"] = values.pop("coarse_correction")
    for name in INTEGERS:
        try:
            values[name] = o.getInt(f"pddattn_{name}", _default(name))
        except PETSc.Error:
            raise ConfigurationError(f"-{prefix}pddattn_{name} must be an integer") from None
    try:
        values["train_lr"] = o.getReal("pddattn_train_lr", _default("train_lr"))
    except PETSc.Error:
        raise ConfigurationError(f"-{prefix}pddattn_train_lr must be a number") from None
    _check_numbers(values, prefix)
    if values["correction"] == "auto":
        values["correction"] = _auto_correction(values)
    return values


# The least value of each integer option (as the CLI's flags check theirs).
MINIMUM = {"overlap": 0, "rank": 0, "train_steps": 0, "levels": 2, "top_size": 0, "chebyshev_degree": 1}


def _check_numbers(values, prefix):
    if not values["train_lr"] > 0:
        raise ConfigurationError(f"-{prefix}pddattn_train_lr must be positive, got {values['train_lr']}")
    for name, least in MINIMUM.items():
        if values[name] < least:
            raise ConfigurationError(f"-{prefix}pddattn_{name} must be >= {least}, got {values[name]}")


def _auto_correction(opts):
    """The default correction, chosen by measurement (docs/results.md, "Coarse corrections")."""
    if opts["model"]:
        return "additive"  # what a stored model was trained as
    exact = not opts["train_steps"] and not opts["rank"] and opts["factors"] == "sparse"
    return "multiplicative" if exact and opts["levels"] == 2 and opts["coarse"] != "none" else "balanced"
