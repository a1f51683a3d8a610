"""Reference errors that keep comparisons honest.

*Capacity* of the global baseline: the error of the best rank-r operator for
the data. Every data kind here has f (fourier, solve) or u (probe) white in
the eigenbasis of A, or with weights that decrease along it, so the best
rank-r operator in the mean-squared sense is the truncated inverse
V_r Lambda_r^-1 V_r^T with the r smallest eigenpairs of A. It is evaluated
with the training metric (mean relative L2 error on the test set), which it
minimises up to the per-sample normalisation; a trained model may therefore
end a hair below it, never far.

Without a matrix (the user's pairs alone) the capacity is the best rank-r
linear map fitted to the training pairs, reduced-rank regression
(regression.py), evaluated on the test pairs: the best any rank-r operator
learnt from these pairs can do, in the Frobenius norm of the fit.

*Schwarz start* of DD attention: the error of the same architecture
initialised as truncated two-level additive Schwarz (no training), the
classical preconditioner DD attention starts from.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from .models import architecture, model_from_architecture
from .parallel.layout import SerialLayout
from .regression import reduced_rank_error
from .train import evaluate

__all__ = ["truncated_inverse_error", "global_capacity", "regression_capacity", "schwarz_start_error"]


def truncated_inverse_error(problem, f, u, r):
    """Mean relative L2 error of V_r Lambda_r^-1 V_r^T on node-major test data f, u (n, T)."""
    lam, V = problem.smallest_eigenpairs(r)
    F, U = (np.asarray(t.detach().cpu().double() if isinstance(t, torch.Tensor) else t) for t in (f, u))
    Y = V @ ((V.T @ F) / lam[:, None])
    return float(np.mean(np.linalg.norm(Y - U, axis=0) / np.linalg.norm(U, axis=0)))


REGRESSION_PAIRS = 4096  # training pairs the regression is fitted to (its cost is O(n S^2 + S^3))


def global_capacity(cfg, problem, data):
    """(capacity, what it is) of a rank-cfg.model.rank global model on the run's test set (serial data)."""
    f, u = data.test
    if problem.has_operator:
        return truncated_inverse_error(problem, f, u, cfg.model.rank), "truncated A^-1, best rank-r"
    return regression_capacity(data.sampler.pairs, f, u, cfg.model.rank)


def regression_capacity(pairs, f_test, u_test, r, limit=REGRESSION_PAIRS):
    """(error, what it is) of the rank-r reduced-rank regression on up to ``limit`` training pairs."""
    count = min(pairs.train_count, limit)
    F, U = pairs.read("train", np.arange(count), np.arange(pairs.n))
    Ft, Ut = (np.asarray(t.detach().cpu().double() if isinstance(t, torch.Tensor) else t) for t in (f_test, u_test))
    return reduced_rank_error(F.T, U.T, Ft, Ut, r), f"rank-r regression on {count} pairs"


def schwarz_start_error(cfg, problem, data, hierarchy=None):
    """Test error of the DD architecture of ``cfg`` initialised as truncated two-level Schwarz."""
    arch = architecture(cfg.to_dict(), problem, hierarchy)
    model = model_from_architecture(arch, problem=problem, dtype=torch.float64, init="schwarz", hierarchy=hierarchy)
    f, u = data.test
    test_set = SimpleNamespace(test=(f.double(), u.double()), test_size=data.test_size)  # float64 evaluation
    return evaluate(model, test_set, SerialLayout())
