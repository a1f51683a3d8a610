"""Problems: the SPD operator A (1D/2D diffusion families or a user's matrix) and exact data.

    from pddattn.problems import make_problem, make_sampler
    problem = make_problem("diffusion2d", grid=(63, 63), coefficient="lognormal:1")
    f, u = make_sampler("solve", problem, seed=0).sample(16)     # A u = f, (16, 3969) each
"""
from .coefficients import COEFFICIENTS, coefficient_field, parse_coefficient
from .families import (FAMILIES, Problem, check_spd, make_problem, operator_problem, parse_grid, problem_from_spec,
                       read_matrix, spec_label, write_petsc_binary)
from .samplers import DATA_KINDS, backward_error, make_sampler
from .spectra import smallest_eigenpairs

__all__ = ["COEFFICIENTS", "coefficient_field", "parse_coefficient", "FAMILIES", "Problem", "check_spd",
           "make_problem", "operator_problem", "parse_grid", "problem_from_spec", "read_matrix", "spec_label", "write_petsc_binary",
           "DATA_KINDS", "backward_error", "make_sampler", "smallest_eigenpairs"]
