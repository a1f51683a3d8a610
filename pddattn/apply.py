"""``pddattn apply``: a trained model's answer u = M(A)^-1 f on a user's operators, refined to any accuracy.

    pddattn apply --model runs/fam/checkpoint.pt --matrix A.npz --rhs F.npy --out U.npy --refine 20
    pddattn apply --model runs/fam/checkpoint.pt --data triplets.npz --out U.npy --refine 20

A generated-factor (family) model builds its factors from each operator it
is given: a matrix file (PETSc binary or scipy .npz; ``--grid nx x ny``
states its grid, a square one is assumed otherwise) or the fields ``a`` of a
triplet file (problems/triplets.py). A free-factor model serves its own
matrix only. ``--refine K`` runs K steps of CG preconditioned by M(A)^-1
from the model's answer (refine.py); every figure printed is a true
relative residual ||f - A u|| / ||f||, with the relative error where u is
known (``--solution U.npy`` or the triplets' ``u``).
"""
from __future__ import annotations

import numpy as np
import torch

from . import family_run
from .checkpoint import load_model
from .errors import ConfigurationError
from .problems.families import parse_grid, read_matrix
from .problems.triplets import read_triplets
from .refine import refine

__all__ = ["apply_main", "Answer"]

_BATCH = 32  # operators whose values are set up at once (hierarchy.values)


class Answer:
    """u for every right-hand side with the residuals and errors met on the way (one operator's)."""

    def __init__(self, U, history, errors):
        self.U, self.history, self.errors = U, history, errors

    def line(self, name):
        first, last = self.history[0].max(), self.history[-1].max()
        text = f"{name}: model answer, true relative residual {first:.3e}"
        if self.errors is not None:
            text += f", relative error {self.errors[0]:.3e}"
        if len(self.history) > 1:
            text += f"; after {len(self.history) - 1} CG steps preconditioned by it: residual {last:.3e}"
            if self.errors is not None:
                text += f", error {self.errors[-1]:.3e}"
        return text


def _errors(U_list, solution):
    if solution is None:
        return None
    norm = np.linalg.norm(solution, axis=0)
    return [float((np.linalg.norm(U - solution, axis=0) / norm).max()) for U in U_list]


def solve_one(A, F, apply, steps, rtol, solution=None, precondition=None):
    """The model's answer to A U = F (n, B) and its refinement by CG preconditioned by ``precondition``
    (default: the model itself): an :class:`Answer`."""
    U0 = apply(F)
    U, history = refine(A, F, U0, precondition or apply, steps, rtol)
    return Answer(U, history, _errors([U0, U], solution))


def _family_answers(path, operators, rhs, solutions, grid, steps, rtol):
    spec, payload = family_run.load(path)
    model, answers = None, []
    for start in range(0, len(operators), _BATCH):
        chunk = operators[start:start + _BATCH]
        if model is None or model.n != chunk[0].shape[0]:
            model = family_run.model_for(spec, payload, chunk[0], grid or _grid_of(chunk[0]))
        ops = model.values(chunk)
        for k, (A, op) in enumerate(zip(chunk, ops)):
            def apply(R, op=op):
                with torch.no_grad():
                    return model.apply_of(op)(torch.as_tensor(R.T.copy())).numpy().T
            i = start + k
            answers.append(solve_one(A, rhs[i], apply, steps, rtol, None if solutions is None else solutions[i]))
            op.free()
    return answers


def _grid_of(A):
    grid = family_run.square_grid(A.shape[0])
    if grid is None:
        raise ConfigurationError(f"the operator has {A.shape[0]} rows, not a square grid; give --grid nx x ny")
    return grid


def _free_answers(path, operators, rhs, solutions, steps, rtol):
    """A free-factor model on its own matrix (a given --matrix must be it)."""
    model, _ = load_model(path)
    own = model.problem.A if getattr(model, "problem", None) is not None and model.problem.has_operator else None
    if own is None:
        raise ConfigurationError(f"{path} was trained on pairs without an operator; apply needs one")
    if operators is not None and (operators[0].shape != own.shape or abs(operators[0] - own).max() != 0):
        raise ConfigurationError(f"{path} is a free-factor model of its own matrix ({model.problem.family}); it "
                                 "cannot serve another operator (train one with --factors generated)")

    if steps and not model.symmetric:
        raise ConfigurationError(f"--refine runs CG, which needs a symmetric M^-1; {path} is not symmetric "
                                 "(train with --symmetric)")
    # A rank-deficient M^-1 is singular: CG then gets D^-1 added, the SPD shift the PC adds (petsc/pc.py).
    shift = 1.0 / own.diagonal()[:, None] if steps and model.rank_bound() < model.n else 0.0
    if steps and model.rank_bound() < model.n:
        print(f"the model's M^-1 has rank at most {model.rank_bound():,} < n = {model.n:,}: CG refines with "
              "M^-1 + D^-1 (SPD)")

    def apply(R):
        with torch.no_grad():
            return model(torch.as_tensor(R.T.copy(), dtype=torch.float64)).numpy().T
    return [solve_one(own, rhs[0], apply, steps, rtol, None if solutions is None else solutions[0],
                      precondition=lambda R: apply(R) + shift * R)]


def _read_rhs(path, n):
    """F (n, B) from a .npy of shape (n,), (B, n) or (B, ny, nx)."""
    try:
        F = np.load(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--rhs {path}: {exc}") from None
    F = np.asarray(F, dtype=np.float64)
    F = F.reshape(1, -1) if F.ndim == 1 else F.reshape(len(F), -1)
    if F.shape[1] != n:
        raise ConfigurationError(f"--rhs {path} has {F.shape[1]} values per right-hand side, the operator {n} rows")
    if not np.isfinite(F).all():
        raise ConfigurationError(f"--rhs {path} holds NaN or infinite values")
    return F.T.copy()


def apply_main(args):
    """The ``apply`` command; returns the answers."""
    if args.matrix and args.data:
        raise ConfigurationError("give the operators one way: --matrix FILE with --rhs F.npy, or --data FILE")
    if args.data is None and args.rhs is None:
        raise ConfigurationError("give the right-hand sides: --rhs F.npy (with --matrix FILE for a generated-"
                                 "factor model), or --data triplets.npz")
    if args.data is not None and args.rhs is not None:
        raise ConfigurationError("--data triplets.npz carries its right-hand sides (f); drop --rhs")
    if args.refine < 0:
        raise ConfigurationError(f"--refine must be 0 or more CG steps, got {args.refine}")
    grid = parse_grid(args.grid) if args.grid else None
    family = family_run.is_family(_peek(args.model))
    if args.data is not None and not family:
        raise ConfigurationError(f"{args.model} is a free-factor model of its own matrix; triplets need a "
                                 "generated-factor model (pddattn train --factors generated)")
    if args.data is not None:
        triplets = read_triplets(args.data, getattr(args, "split", "train"))
        operators, rhs = triplets.operators(), [f[:, None] for f in triplets.f]
        solutions = None if triplets.u is None else [u[:, None] for u in triplets.u]
        grid = triplets.grid
    else:
        operators = [read_matrix(args.matrix)] if args.matrix else None
        n = operators[0].shape[0] if operators else None
        if n is None:
            n = load_model(args.model)[0].n
        rhs = [_read_rhs(args.rhs, n)]
        solutions = [_read_rhs(args.solution, n)] if args.solution else None
    if family:
        if operators is None:
            raise ConfigurationError("a generated-factor model needs the operator: --matrix FILE or --data FILE")
        answers = _family_answers(args.model, operators, rhs, solutions, grid, args.refine, args.rtol)
    else:
        answers = _free_answers(args.model, operators, rhs, solutions, args.refine, args.rtol)
    _write(args, answers)
    return answers


def _peek(path):
    """The checkpoint's payload head (for its format), or a one-line error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigurationError(f"no checkpoint file at {path}") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable file is one line
        raise ConfigurationError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None


def _write(args, answers):
    names = [f"operator {i}" for i in range(len(answers))] if len(answers) > 1 else ["answer"]
    for name, answer in list(zip(names, answers))[:10]:
        print(answer.line(name))
    if len(answers) > 10:
        worst = max(a.history[-1].max() for a in answers)
        print(f"... {len(answers)} operators, the largest final true relative residual {worst:.3e}")
    U = np.stack([a.U.T for a in answers]) if args.data else answers[0].U.T
    if args.data:  # back on the full grid, the ring zero, as the triplets' u
        side = int(round(np.sqrt(U.shape[-1]))) + 2
        full = np.zeros((len(U), side, side))
        full[:, 1:-1, 1:-1] = U[:, 0].reshape(len(U), side - 2, side - 2)
        U = full
    elif U.shape[0] == 1:
        U = U[0]
    np.save(args.out, U)
    print(f"wrote {args.out} (shape {U.shape})")
