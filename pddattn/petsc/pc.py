"""DDAttentionPC: DD attention as a PETSc preconditioner, built from the operator PETSc hands it.

    -pc_type python -pc_python_type pddattn.petsc.DDAttentionPC

Two ways, chosen by options (under the PC's prefix):

- ``-pddattn_model PATH``: a trained checkpoint. setUp checks that it fits
  the operator: its size, the problem spec when the matrix carries one (its
  name, as ``pddattn solve`` sets it), and a probe ||x - M^-1 A x|| / ||x||
  against the value stored at training. A model of another matrix is refused
  on every rank.
- no model: DD attention is built from pc.getOperators() on pc.comm. The
  subdomains are ``-pddattn_subdomains`` (``4x4``: boxes of the DMDA grid;
  ``16``: algebraic row blocks of A), by default one per rank (the DMDA's
  process grid when the PC has a DMDA), as PCASM. ``-pddattn_overlap``
  (default 1), ``-pddattn_coarse`` (harmonic, q1, hat, nicolaides, none; default
  harmonic), ``-pddattn_rank`` (default full: classical two-level additive
  Schwarz), ``-pddattn_train_steps K`` (condition-loss training on this
  operator during setUp, on the PC's model as it is distributed: each rank
  its rows of the Lanczos vectors, spectrum.py). With a harmonic, q1 or no
  coarse space every such PC (exact, truncated, dense or trained) is set up
  from each rank's rows of the operator (local.py); only the hat coarse
  space and a stored model learnt from pairs without A gather it.

setUp runs again when PETSc calls it with changed operator values (the
Mat's object state) and reuses everything otherwise. ``apply`` runs the
distributed operator in float64; a PETSc Scatter made in setUp moves the
Vec's entries to the model's rows (the cores of a rank's subdomains, in the
grid's natural ordering) and back.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import sources, teardown
from ..checkpoint import CheckpointError
from .corrections import Multiplicative, Parts, balanced, estimate_lambda_max
from ..errors import CollectiveError, ConfigurationError
from .one_level import OneLevelSchwarz, applies
from .scatter import ModelRows
from .view import describe, dtype_of, view_lines
from .options import OPTIONS, parse_options
from ..parallel.layout import Layout
from ..problems.samplers import Noise
from ..spectrum import fit_probe

__all__ = ["DDAttentionPC", "rank_deficiency", "OPTIONS", "PROBE_TOLERANCE"]

PROBE_TOLERANCE = 1e-3  # relative difference of the fit probe that marks another operator


def _petsc():
    from petsc4py import PETSc
    return PETSc


class DDAttentionPC:
    """petsc4py Python-PC context applying y = M^-1 x of DD attention."""

    def __init__(self):
        self.model = self.key = self.info = self.layout = self.source = None
        self._rows = self._work = self._jacobi = self._jacobi_work = None
        self._vcycle = self._one_level = self._to_petsc = None
        self.setups = {"built": 0, "refactored": 0}

    def create(self, pc):
        teardown.register(self, pc)  # made safe at interpreter exit (teardown.py)

    def destroy(self, pc):
        teardown.unregister(self)
        self._free_vectors()
        self._free_model()
        if self.layout is not None:
            self.layout.free()
        self.model = self.key = self.info = self.layout = self.source = None

    def _free_model(self):
        """Release the model's and its hierarchy's objects outside Python (factorizations, communicators)."""
        if self.model is not None:
            self.model.free()
        if self.info and self.info.get("hierarchy") is not None:
            self.info["hierarchy"].free()
        self.model = self.source = None

    def _free_vectors(self):
        for obj in (self._rows, self._jacobi, self._jacobi_work, self._one_level, *(self._work or ())):
            if obj is not None:
                obj.destroy()
        self._rows = self._work = self._jacobi = self._jacobi_work = self._one_level = None

    # ----------------------------------------------------------------- options
    def _options(self, pc):
        return parse_options(pc.getOptionsPrefix() or "")

    def setFromOptions(self, pc):
        PETSc = _petsc()
        if PETSc.Options().hasName("help"):
            prefix = pc.getOptionsPrefix() or ""
            lines = ["DD attention preconditioner (pddattn.petsc.DDAttentionPC) options:"]
            lines += [f"  -{prefix}{name} <{default}>: {text}" for name, default, text in OPTIONS]
            PETSc.Sys.Print("\n".join(lines), comm=pc.comm)

    # ------------------------------------------------------------------ set-up
    def setUp(self, pc):
        teardown.register(self, pc)
        with teardown.abort_if_one_rank_fails(pc.comm.tompi4py()):
            try:
                self._setup(pc)
            except CollectiveError as exc:  # say it in the PC's option names, not the CLI's flags
                raise type(exc)(in_option_names(str(exc), pc.getOptionsPrefix() or "")) from None

    def _setup(self, pc):
        """Structure (layout, decomposition, exchange plans, Scatter) once; new values of A refactor only."""
        _, P = pc.getOperators()
        key = (int(P.handle), P.stateGet(), P.getSize()[0])
        if self.model is not None and key == self.key:
            return  # same operator, same values: reuse
        opts, t0 = self._options(pc), time.perf_counter()
        if self.layout is None:
            self.layout = Layout(comm=pc.comm.tompi4py())
        if sources.same_structure(self.source, opts, P) and sources.update(self.source, opts, P, pc, self.layout):
            self.setups["refactored"] += 1
        else:
            self._free_model()
            self.source = sources.build(opts, P, pc, self.layout)
            self.model, self.info = _in_precision(self.source.model.eval(), opts["precision"]), self.source.info
            self.setups["built"] += 1
            self._to_petsc = self.source.to_petsc
            self._free_vectors()
            self._rows = ModelRows(P, self._to_petsc(self.model.own_rows))
            if self.source.probe is not None:
                self._check_fit(opts, P)
        self.key = key
        self._setup_smoother(opts, P)  # D^-1 follows the values too
        self._setup_one_level(P)
        self._setup_correction(opts, P)  # and lambda_max(M1 A)
        self.info["seconds"] = time.perf_counter() - t0

    def _setup_smoother(self, opts, P):
        """D^-1 of the operator, added to M^-1 when the model is rank-deficient (or when asked): no singular
        M^-1 reaches a Krylov method unless -pddattn_smoother none says so, and then with a notice."""
        PETSc = _petsc()
        if self._jacobi is not None:
            self._jacobi.destroy()
            self._jacobi = None
        generated = self.source.kind == "family-rows"  # its omega D^-1 is part of the model: no notice
        deficiency = "" if generated else rank_deficiency(self.model)
        if opts["smoother"] == "jacobi" or ((deficiency or generated) and opts["smoother"] == "auto"):
            self._jacobi = P.getDiagonal()
            self._jacobi.reciprocal()
            self._jacobi.scale(self.info.get("jacobi_weight", 1.0))
        if deficiency:
            then = ("applied as M^-1 + D^-1 (Jacobi added: SPD); -pddattn_smoother none applies it alone"
                    if self._jacobi is not None else "applied alone (-pddattn_smoother none)")
            PETSc.Sys.Print(f"DDAttentionPC: {deficiency} Here it is {then}.", comm=P.getComm())

    def _setup_one_level(self, P):
        """The exact M1 as PETSc Mat and Vecs (one_level.py), for every set of values: the factor is new."""
        if self._one_level is not None:
            self._one_level.destroy()
        self._one_level = OneLevelSchwarz(self.model, P, self._to_petsc) if applies(self.model) else None

    def _setup_correction(self, opts, P):
        """The V-cycle's lambda_max(M1 A), estimated anew for every set of values (multiplicative only)."""
        self._vcycle = None
        if opts["correction"] != "multiplicative" or not self.model.has_coarse:
            return
        m = self.model
        if not getattr(m, "exact", False) or len(m.level_operators) > 1:
            raise ConfigurationError(
                f"-{opts['prefix']}pddattn_coarse_correction multiplicative needs an exact coarse solve (the PC "
                f"built from the operator, two levels, untrained, full rank); use balanced")
        start = P.createVecLeft()  # white noise at the natural rows: the same start on any layout
        self._rows.to_vec(Noise(0, 0, 0, 1, m.n).at(m.own_rows)[0], start)
        lam = estimate_lambda_max(P, self._parts(P, False).local, start)
        start.destroy()
        self._vcycle = Multiplicative(opts["chebyshev_degree"], lam)

    def _check_fit(self, opts, P):
        """Refuse (on every rank alike) a model whose probe on this operator differs from training."""
        now = fit_probe(self.model, lambda x: self._operator_apply(P, x), getattr(self.model, "layout", None))
        stored = self.source.probe
        if abs(now - stored) > PROBE_TOLERANCE * max(stored, 1e-12) + 1e-10:
            raise CheckpointError(
                f"{opts['model']} does not fit this operator: ||x - M^-1 A x|| / ||x|| is {now:.3e} here but was "
                f"{stored:.3e} on the matrix it was trained for ({describe(self.info['arch']['problem'])}); "
                f"it is a model of another matrix")

    # ------------------------------------------------------------------- apply
    def _operator_apply(self, P, x_model):
        """Own rows of A x for own rows x (node-major, model layout), through the PETSc operator."""
        x, y = P.createVecs()
        out = []
        for column in x_model.T:
            self._rows.to_vec(np.ascontiguousarray(column), x)
            P.mult(x, y)
            out.append(self._rows.to_model(y))
        return np.stack(out, axis=1)

    def _model_apply(self, part, x, y):
        """y = part(x) for a part of the model (its layout, its precision) applied to a PETSc Vec."""
        with torch.no_grad():
            values = torch.from_numpy(self._rows.to_model(x).reshape(-1, 1)).to(dtype_of(self.model))
            result = part(values).to(torch.float64).numpy().reshape(-1)
        self._rows.to_vec(result, y)

    def _parts(self, P, transpose):
        """M1, P0 and A as Vec -> Vec maps (their transposes for a transposed application)."""
        m = self.model
        local = self._one_level or (lambda a, b: self._model_apply(lambda v: m.local_matvec(v, transpose), a, b))
        return Parts(local,
                     lambda a, b: self._model_apply(lambda v: m.coarse_term(v, transpose), a, b),
                     P.multTranspose if transpose else P.mult)

    def _apply(self, pc, x, y, transpose):
        m, correction = self.model, self.info["options"]["correction"]
        _, P = pc.getOperators()
        if self._work is None:
            self._work = [x.duplicate() for _ in range(5)]
        if correction == "additive" or not m.has_coarse:
            if self._one_level is None:
                self._model_apply(lambda v: m.matvec(v, transpose=transpose), x, y)
                return
            parts = self._parts(P, transpose)  # M1 x (+ P0 x), M1 on PETSc's own objects
            parts.local(x, y)
            if m.has_coarse:
                parts.coarse(x, self._work[0])
                y.axpy(1.0, self._work[0])
            return
        if correction == "balanced":
            balanced(self._parts(P, transpose), self._work[:3], x, y)
        else:
            self._vcycle.apply(self._parts(P, transpose), self._work, x, y)

    def apply(self, pc, x, y):
        self._apply(pc, x, y, transpose=False)
        self._add_jacobi(x, y)

    def applyTranspose(self, pc, x, y):
        self._apply(pc, x, y, transpose=True)
        self._add_jacobi(x, y)

    def _add_jacobi(self, x, y):
        """y += D^-1 x where a smoother is composed (D is symmetric: the same for the transpose)."""
        if self._jacobi is None:
            return
        if self._jacobi_work is None:  # one work Vec for every application, not one each
            self._jacobi_work = x.duplicate()
        self._jacobi_work.pointwiseMult(self._jacobi, x)
        y.axpy(1.0, self._jacobi_work)

    def view(self, pc, viewer):
        for line in view_lines(self, pc):
            viewer.printfASCII(f"  {line}\n")


# ---------------------------------------------------------------------- helpers
_FLAGS = {"--subdomains": "pddattn_subdomains", "--overlap": "pddattn_overlap", "--rank": "pddattn_rank",
          "--levels": "pddattn_levels", "--top-size": "pddattn_top_size", "--coarse": "pddattn_coarse"}


def in_option_names(message, prefix):
    """A shared error message with the CLI's flags replaced by this PC's options (no --data-parallel here)."""
    message = message.replace(", or --data-parallel", "")
    for flag, option in _FLAGS.items():
        message = message.replace(flag, f"-{prefix}{option}")
    return message


def _in_precision(model, precision):
    """The model with its learned factors in ``precision``; exact (factorized) parts stay float64."""
    if precision == "float32" and model.num_parameters() > 0:
        return model.to(torch.float32)
    return model


def rank_deficiency(model):
    """A one-line notice when M^-1 is singular (rank < n), with what to do; '' when it is not."""
    d = model.decomposition
    rank_bound = model.rank_bound()
    if rank_bound >= d.n:
        return ""
    return (f"the model is rank-deficient (local rank {model.r}, largest subdomain {d.max_size}, coarse rank "
            f"{model.r0}): M^-1 has rank at most {rank_bound:,} < n = {d.n:,} and is singular. A Krylov method can then report "
            f"convergence on the preconditioned residual while the true residual stays large. Use full local ranks "
            f"(train with --rank {d.max_size} --init schwarz) or compose with a smoother: -pc_type composite "
            f"-pc_composite_type multiplicative -pc_composite_pcs python,sor")
