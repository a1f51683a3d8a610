"""pddattn: domain-decomposition attention (Koehler and Rheinbach, arXiv:2606.18525).

A softmax-free attention operator shaped like a two-level overlapping
Schwarz preconditioner,

    M^-1 = Phi Q_0 K_0^T Phi^T + sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i,

trained to approximate the inverse of the 1D diffusion matrix, compared with
the global low-rank attention Q K^T, run under MPI and usable as a PETSc
preconditioner (``-pc_type python -pc_python_type pddattn.petsc.DDAttentionPC``).
"""
from .decomposition import Decomposition
from .operators import DDAttention, GlobalAttention
from .problem import FourierSampler, ProbeSampler

__version__ = "0.1.0"
__all__ = ["Decomposition", "DDAttention", "GlobalAttention", "FourierSampler", "ProbeSampler", "__version__"]
