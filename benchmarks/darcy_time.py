"""Time to accuracy on the Darcy test fields (used by benchmarks/darcy.py after training).

For each test field at 85 x 85 (f = 1), the seconds until the relative error against the exact solution
of *this* discretization, v = A^-1 f (computed apart, not timed), first falls below 1e-2, 1e-4 and 1e-8,
set-up included, and the steps it took to 1e-4. Every method runs once on the first field untimed before,
so one-time costs (first calls, caches) are not in the means:

  dd + CG            the trained DD model: its factors from A (the operator's set-up), its answer (step 0),
                     then CG preconditioned by M(A) from it (pddattn apply --refine); dd-cK + CG the same
                     for a model with K generated coarse functions per box
  dd, then CG + AS   the same answer as CG's initial guess, then CG preconditioned by the classical CG + AS
                     below (exact local solves): the learned answer beside the unlearned preconditioner
  CG + AS            CG with classical two-level additive Schwarz on dd's structure, exact local solves
                     (set-up: the local and coarse factorizations), from zero
  RAS                the classical restricted Schwarz iteration u <- u + M_RAS^-1 (f - A u) from zero (no
                     Krylov method: RAS is not symmetric), the same structure and exact solves
  CG + GAMG, hypre   PETSc, defaults, set-up included
  direct             a sparse LU (scipy's SuperLU) and one solve
  fno, gt, ...       one inference each: their error stays where it is (a plateau, reported as such)

Then the same per field when 64 fields are processed together, where learned models gain: their answers
come from one batched pass (DD: one batched hierarchy values() and generator pass; its time shared by
the 64), DD's refinement then runs per field. The classical methods have no batched form here (each
field's operator is its own), so their per-field times are the ones above.

The error against the 421^2 solution u is not what is measured here: every method on this grid is at
least the discretization's error away from u (the "floor" of darcy.md).

Every field's (seconds, error) after each step is kept ("traces") for the plot of error against seconds
(:func:`plot`, darcy_time.png).
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
    """The first time (since start, plus ``elapsed`` spent before it) and step each threshold is met."""

    def __init__(self, exact, elapsed=0.0):
        self.exact, self.t0, self.hit, self.steps, self.error = exact, time.perf_counter() - elapsed, {}, {}, None
        self.trace = []

    def report(self, U, step):
        err = float(np.linalg.norm(np.ravel(U) - self.exact) / np.linalg.norm(self.exact))
        now, self.error = time.perf_counter() - self.t0, err
        self.trace.append((now, err))
        for t in THRESHOLDS:
            if err <= t and t not in self.hit:
                self.hit[t], self.steps[t] = now, step
        return err

    def done(self):
        return len(self.hit) == len(THRESHOLDS)


def _numpy(apply_):
    """A (B, n) torch map as an (n, B) numpy one."""
    return lambda R: apply_(torch.as_tensor(R.T.copy())).numpy().T


class _Reached(Exception):
    """Every threshold is met: the iteration has nothing more to report."""


def _cg(A, f, U0, apply, clock):
    """CG preconditioned by ``apply`` (torch) from U0, each step's error reported, until every threshold is met."""
    def step(k, U):
        clock.report(U, k)
        if clock.done():
            raise _Reached
    with torch.no_grad():
        try:
            refine(A, f, U0, _numpy(apply), STEPS, rtol=1e-13, callback=step)
        except _Reached:
            pass


def _refine(model, op, A, f, U0, clock, classical=False):
    """CG from the model's answer U0 (step 0), preconditioned by M(A) (or, ``classical``, by exact two-level
    additive Schwarz on the model's boxes)."""
    clock.report(U0, 0)
    _cg(A, f, U0, schwarz(model, op) if classical else model.apply_of(op), clock)


def _dd(dd, A, f, clock, classical=False):
    model = dd.model
    op = model.values([A])[0]
    with torch.no_grad():
        U0 = _numpy(model.apply_of(op))(f)
    _refine(model, op, A, f, U0, clock, classical)
    op.free()


def _as(dd, A, f, clock):
    op = dd.model.values([A])[0]
    _cg(A, f, np.zeros_like(f), schwarz(dd.model, op), clock)
    op.free()


def _ras(dd, A, f, clock):
    op = dd.model.values([A])[0]
    with torch.no_grad():
        apply = _numpy(schwarz(dd.model, op, restricted=True))
        U = apply(f)
        for step in range(1, STEPS + 1):
            if step > 1:
                U = U + apply(f - A @ U)
            clock.report(U, step)
            if clock.done():
                break
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
    ksp.setMonitor(lambda k, its, rnorm: clock.report(k.buildSolution().getArray(), its))
    ksp.solve(b, x)
    ksp.destroy()
    M.destroy()


def _direct(A, f, clock):
    clock.report(splu(A.tocsc()).solve(f[:, 0]), 1)


def _field(model, a):
    with torch.no_grad():
        return model(a)[:, 1:-1, 1:-1].reshape(len(a), -1).double().numpy()


def _summary(clocks):
    """Mean seconds and steps to each threshold (None where a field missed it), and every field's trace."""
    out = {}
    for t in THRESHOLDS:
        reached = all(t in c.hit for c in clocks)
        out[str(t)] = float(np.mean([c.hit[t] for c in clocks])) if reached else None
        out[f"steps {t}"] = float(np.mean([c.steps[t] for c in clocks])) if reached else None
    out["traces"] = [c.trace for c in clocks]
    return out


def time_to_accuracy(trained, a_test, log=print, a_batch=None):
    """{"rows": {method: {threshold: mean s or None, "steps T": mean steps, "plateau": neural error,
    "batched": {threshold: mean s per field in batches of 64}}}}.

    ``a_test``: the fields timed one at a time, after an untimed run of every method on the first (one-time
    costs: first calls, caches); ``a_batch``: those timed in a batch of 64 (default a_test, repeated to 64).
    Every DD model (dd, dd-cK) refines by CG from its answer; AS and RAS on dd's structure (without a
    trained ``dd``, no AS and RAS rows)."""
    dd = trained.get("dd")
    learned_dd = sorted(k for k in trained if k.startswith("dd"))
    neural = [k for k in trained if not k.startswith("dd")]
    schwarz_rows = ["CG + AS", "RAS"] if dd else []
    clocks = {k: [] for k in [f"{m} + CG" for m in learned_dd] + [f"{m}, then CG + AS" for m in learned_dd]
              + schwarz_rows + ["CG + GAMG", "CG + hypre", "direct"] + neural}
    for k, a in enumerate([a_test[0]] + list(a_test)):  # the first, untimed: one-time costs (imports, caches)
        A = operator_of_field(a.double().numpy())
        f = np.ones((A.shape[0], 1))
        exact = spsolve(A.tocsc(), f[:, 0])
        runs = [(f"{m} + CG", lambda c, m=m: _dd(trained[m], A, f, c)) for m in learned_dd]
        runs += [(f"{m}, then CG + AS", lambda c, m=m: _dd(trained[m], A, f, c, True)) for m in learned_dd]
        if dd:
            runs += [("CG + AS", lambda c: _as(dd, A, f, c)), ("RAS", lambda c: _ras(dd, A, f, c))]
        runs += [("CG + GAMG", lambda c: _petsc("gamg", A, f, c)), ("CG + hypre", lambda c: _petsc("hypre", A, f, c)),
                 ("direct", lambda c: _direct(A, f, c))]
        runs += [(name, lambda c, name=name: c.report(_field(trained[name], a[None]), 0)) for name in neural]
        for name, run in runs:
            clock = Clock(exact)
            run(clock)
            if k:
                clocks[name].append(clock)
    rows = {name: _summary(c) for name, c in clocks.items()}
    for name in neural:
        rows[name]["plateau"] = float(np.mean([c.error for c in clocks[name]]))
    batch = a_test if a_batch is None else a_batch
    batch = batch.repeat((64 + len(batch) - 1) // len(batch), 1, 1)[:64]
    for name, value in _batched(trained, batch).items():
        rows[name]["batched"] = value
    log(f"time to accuracy over {len(a_test)} fields, and {len(batch)} in a batch: done")
    return {"fields": len(a_test), "batch": len(batch), "rows": rows}


def _batched(trained, batch):
    """{method: mean seconds per field to each threshold} when the 64 fields' answers come from one pass."""
    As = [operator_of_field(a.double().numpy()) for a in batch]
    f = np.ones((As[0].shape[0], 1))
    exact = [spsolve(A.tocsc(), f[:, 0]) for A in As]
    out = {}
    for name, model in trained.items():
        t0 = time.perf_counter()
        if name.startswith("dd"):
            ops = model.model.values(As)
            with torch.no_grad():
                U0 = model.predict(ops)[:, 1:-1, 1:-1].reshape(len(As), -1, 1).numpy()
        else:
            U0 = _field(model, batch)[:, :, None]
        shared = (time.perf_counter() - t0) / len(As)
        if not name.startswith("dd"):
            out[name] = _per_field(exact, shared, lambda i, clock: clock.report(U0[i], 0))
            continue
        for label, classical in ((f"{name} + CG", False), (f"{name}, then CG + AS", True)):
            out[label] = _per_field(exact, shared, lambda i, clock: _refine(model.model, ops[i], As[i], f, U0[i],
                                                                           clock, classical))
        for op in ops:
            op.free()
    return out


def _per_field(exact, shared, run):
    """Mean seconds per field to each threshold, each field's clock starting at its own refinement after
    its share of the batched answer."""
    clocks = []
    for i, v in enumerate(exact):
        clocks.append(Clock(v, elapsed=shared))
        run(i, clocks[-1])
    summary = _summary(clocks)
    return {t: summary[t] for t in map(str, THRESHOLDS)} | {"answer": shared}


def _cell(r, t):
    v = r.get(str(t))
    if v is not None:
        return f"{v:.4f}"
    return f"plateau at {r['plateau']:.1e}" if "plateau" in r else "not reached"


def markdown(result):
    rows = result["rows"]
    head = ("| method ({} torch threads) | s to 1e-2 | s to 1e-4 | s to 1e-8 | steps to 1e-4 | "
            "in batches of {}: s to 1e-2 | s to 1e-4 | s to 1e-8 | answer s |").format(torch.get_num_threads(),
                                                                                    result.get("batch", 64))
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        steps = r.get("steps 0.0001")
        cells = [_cell(r, t) for t in THRESHOLDS] + [f"{steps:.1f}" if steps is not None else "-"]
        b = r.get("batched")
        if b is None:
            cells += ["as one at a time"] * 3 + ["-"]
        else:
            cells += [_cell({**b, **({"plateau": r["plateau"]} if "plateau" in r else {})}, t) for t in THRESHOLDS]
            cells += [f"{b['answer']:.4f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return (f"Relative error against this grid's exact solution, {result['fields']} test fields one at a time "
            f"(and {result.get('batch', 64)} in one batch), mean seconds per field, set-up included "
            "(every method run once before, untimed):\n\n"
            + "\n".join(lines))


def plot(result, path):
    """Error against seconds, every field one at a time: a line per field and method (a point for the neural
    operators' one answer), the thresholds as grey lines."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]  # 20 apart, dark ones first
    markers = iter("osD^v<>")
    for (name, r), color in zip(result["rows"].items(), colors):
        # learned Schwarz solid, classical methods dashed, the neural operators' answers as points
        style = "--" if name.startswith(("CG", "RAS", "direct")) else "-"
        style = next(markers) if r.get("plateau") is not None else style
        for k, trace in enumerate(r.get("traces", [])):
            # up to the last threshold: the methods that stop on their own residual (PETSc's) go on below it
            reached = [i for i, (_, e) in enumerate(trace) if e <= THRESHOLDS[-1]]
            t, e = zip(*trace[:reached[0] + 1] if reached else trace)
            e = np.maximum(e, 1e-16)  # the direct solve is the reference's own LU: 0 to the bit
            ax.semilogy(t, e, "s" if len(t) == 1 and style in ("-", "--") else style, color=color, alpha=0.6, lw=0.8,
                        ms=4, label=name if k == 0 else None)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("seconds per field (set-up included)")
    ax.set_ylabel("relative error against this grid's solution")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
