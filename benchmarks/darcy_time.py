"""Time to accuracy on the Darcy test fields (used by benchmarks/darcy.py after training).

For each test field at 85 x 85 (f = 1), the seconds until the relative error against the exact solution
of *this* discretization, v = A^-1 f (computed apart, not timed), first falls below 1e-2, 1e-4 and 1e-8,
set-up included, one core:

  dd + CG            the trained DD model: its factors from A (the operator's set-up), its answer, then CG
                     preconditioned by M(A) from it (pddattn apply --refine); dd-cK + CG the same for
                     a model with K generated coarse functions per box
  CG + AS            CG with classical two-level additive Schwarz on the same structure, exact local solves
                     (set-up: the local and coarse factorizations), from zero
  CG + GAMG, hypre   PETSc, defaults, set-up included
  direct             a sparse LU (scipy's SuperLU) and one solve
  fno, gt            one inference each: their error stays where it is (a plateau, reported as such)

The error against the 421^2 solution u is not what is measured here: every method on this grid is at
least the discretization's error away from u (the "floor" of darcy.md). Learned models' answers are also
timed per field in batches of 64 fields (DD: one batched hierarchy values() and generator pass).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy.sparse.linalg import splu, spsolve

from pddattn.family import schwarz
from pddattn.problems.triplets import operator_of_field
from pddattn.refine import refine

THRESHOLDS = (1e-2, 1e-4, 1e-8)
STEPS = 200


class Clock:
    """The first time (since start) each threshold is met by an error reported along the way."""

    def __init__(self, exact):
        self.exact, self.t0, self.hit = exact, time.perf_counter(), {}

    def report(self, U):
        err = float(np.linalg.norm(np.ravel(U) - self.exact) / np.linalg.norm(self.exact))
        now = time.perf_counter() - self.t0
        for t in THRESHOLDS:
            if err <= t and t not in self.hit:
                self.hit[t] = now
        return err


def _dd(dd, A, f, clock):
    model = dd.model
    op = model.values([A])[0]
    with torch.no_grad():
        apply_ = model.apply_of(op)
        apply = lambda R: apply_(torch.as_tensor(R.T.copy())).numpy().T  # noqa: E731
        U0 = apply(f)
        clock.report(U0)
        refine(A, f, U0, apply, STEPS, rtol=1e-13, callback=lambda k, U: clock.report(U))
    op.free()


def _as(dd, A, f, clock):
    model = dd.model
    op = model.values([A])[0]
    with torch.no_grad():
        apply_ = schwarz(model, op)
        apply = lambda R: apply_(torch.as_tensor(R.T.copy())).numpy().T  # noqa: E731
        refine(A, f, np.zeros_like(f), apply, STEPS, rtol=1e-13, callback=lambda k, U: clock.report(U))
    op.free()


def _petsc(pc, A, f, clock):
    from petsc4py import PETSc
    M = PETSc.Mat().createAIJ(A.shape, csr=(A.indptr, A.indices, A.data))
    ksp = PETSc.KSP().create()
    ksp.setOperators(M)
    ksp.setType("cg")
    ksp.getPC().setType(pc)
    if pc == "hypre":
        ksp.getPC().setHYPREType("boomeramg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-13, max_it=STEPS)
    b, x = M.createVecs()
    b.setArray(f[:, 0])
    ksp.setMonitor(lambda k, its, rnorm: clock.report(k.buildSolution().getArray()))
    ksp.solve(b, x)
    ksp.destroy()
    M.destroy()


def _direct(A, f, clock):
    clock.report(splu(A.tocsc()).solve(f[:, 0]))


def _field(model, a):
    with torch.no_grad():
        return model(a)[:, 1:-1, 1:-1].reshape(len(a), -1).double().numpy()


def time_to_accuracy(trained, a_test, log=print):
    """{method: {threshold: mean seconds or None, "error": final mean error, "batched": s per field}}.

    Every DD model (dd, dd-cK) refines by CG from its answer; AS on dd's structure."""
    dd = trained["dd"]
    learned_dd = sorted(k for k in trained if k.startswith("dd"))
    rows = {k: {"hits": [], "errors": []} for k in [f"{m} + CG" for m in learned_dd] +
            ["CG + AS", "CG + GAMG", "CG + hypre", "direct"]}
    neural = [k for k in trained if not k.startswith("dd")]
    for name in neural:
        rows[name] = {"hits": [], "errors": []}
    for a in a_test:
        A = operator_of_field(a.double().numpy())
        f = np.ones((A.shape[0], 1))
        exact = spsolve(A.tocsc(), f[:, 0])
        runs = [(f"{m} + CG", lambda c, m=m: _dd(trained[m], A, f, c)) for m in learned_dd]
        for name, run in runs + [("CG + AS", lambda c: _as(dd, A, f, c)),
                                 ("CG + GAMG", lambda c: _petsc("gamg", A, f, c)),
                                 ("CG + hypre", lambda c: _petsc("hypre", A, f, c)),
                                 ("direct", lambda c: _direct(A, f, c))]:
            clock = Clock(exact)
            run(clock)
            rows[name]["hits"].append(clock.hit)
        for name in neural:
            clock = Clock(exact)
            rows[name]["errors"].append(clock.report(_field(trained[name], a[None])))
            rows[name]["hits"].append(clock.hit)
    out = {}
    for name, r in rows.items():
        out[name] = {str(t): (float(np.mean([h[t] for h in r["hits"]])) if all(t in h for h in r["hits"]) else None)
                     for t in THRESHOLDS}
        if r["errors"]:
            out[name]["plateau"] = float(np.mean(r["errors"]))
    for name, value in _batched(trained, a_test).items():
        out.setdefault(name, {})["batched"] = value
    log(f"time to accuracy over {len(a_test)} fields: done")
    return {"fields": len(a_test), "rows": out}


def _batched(trained, a_test):
    """Seconds per field of each learned model's answer, 64 fields at a time (repeated to 64)."""
    batch = a_test.repeat((64 + len(a_test) - 1) // len(a_test), 1, 1)[:64]
    out = {}
    for name, model in trained.items():
        t0 = time.perf_counter()
        if name.startswith("dd"):
            ops = model.values(batch)
            with torch.no_grad():
                model.predict(ops)
            for op in ops:
                op.free()
        else:
            _field(model, batch)
        out[f"{name} + CG" if name.startswith("dd") else name] = (time.perf_counter() - t0) / 64
    return out


def markdown(result):
    rows = result["rows"]
    lines = [f"| method ({torch.get_num_threads()} torch threads) | s to 1e-2 | s to 1e-4 | s to 1e-8 | "
             "learned answer, s per field in batches of 64 |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        cells = []
        for t in THRESHOLDS:
            v = r.get(str(t))
            cells.append(f"{v:.4f}" if v is not None else (f"plateau at {r['plateau']:.1e}" if "plateau" in r
                                                           else "not reached" if str(t) in r else "-"))
        batched = f"{r['batched']:.4f}" if "batched" in r else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {batched} |")
    return (f"Relative error against this grid's exact solution, {result['fields']} test fields, mean seconds "
            f"(set-up included):\n\n" + "\n".join(lines))
