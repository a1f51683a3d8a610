"""pddattn: domain-decomposition attention (Koehler and Rheinbach, arXiv:2606.18525).

A softmax-free attention operator shaped like a two-level overlapping
Schwarz preconditioner,

    M^-1 = Phi Q_0 K_0^T Phi^T + sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i,

trained to approximate A^-1 for a sparse SPD matrix A (1D and 2D diffusion
with variable coefficients, or a user's matrix), compared with the global
low-rank attention Q K^T, run under MPI and usable as a PETSc preconditioner
(``-pc_type python -pc_python_type pddattn.petsc.DDAttentionPC``).
"""
import torch

from .checkpoint import load_model
from .decomposition import Decomposition, algebraic, boxes, intervals
from .operators import DDAttention, GlobalAttention
from .problems import make_problem, make_sampler
from .problems.laplace1d import FourierSampler, ProbeSampler

__version__ = "0.2.0"
__all__ = ["Decomposition", "intervals", "boxes", "algebraic", "DDAttention", "GlobalAttention", "make_problem",
           "make_sampler", "FourierSampler", "ProbeSampler", "load", "__version__"]


def load(path, dtype=None):
    """The operator stored in a checkpoint, serially: a torch module with ``dense()``.

    >>> model = pddattn.load("runs/dd/checkpoint.pt")      # doctest: +SKIP
    >>> M = model.dense()                                 # n x n, M^-1
    """
    return load_model(path, dtype=dtype or torch.float64)[0]
