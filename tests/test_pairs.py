"""The user's own pairs (--data FILE): made here by an independent solver, read as users give them.

The solver below assembles its own matrices (a 1D jump coefficient, a 2D
5-point Laplacian) with scipy and never calls pddattn, so the pairs are
"made elsewhere".
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from pddattn.assembly import assemble
from pddattn.parallel.layout import ConfigurationError
from pddattn.problems.pairs import PairsSampler, load_pairs
from pddattn.regression import data_gram, map_norm, reduced_rank_error
from pddattn.train import TrainConfig, train
from tolerances import EPS32, cond, rounding

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "20", "--batch", "8", "--eval-every", "10", "--warmup", "2"]


def jump_1d(n, contrast=100.0):
    """-(k u')' with k = contrast on the right half, at cell midpoints (an independent assembly)."""
    h = 1.0 / (n + 1)
    k = np.where((np.arange(n + 1) + 0.5) * h > 0.5, contrast, 1.0)
    return sp.diags([-k[1:-1], k[:-1] + k[1:], -k[1:-1]], [-1, 0, 1], format="csc") / h ** 2


def laplace_2d(nx, ny):
    """5-point Laplacian, node (i, j) at j nx + i, by Kronecker products."""
    def t(m):
        return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m)) * (m + 1) ** 2
    return (sp.kron(sp.eye(ny), t(nx)) + sp.kron(t(ny), sp.eye(nx))).tocsc()


def solved_pairs(A, samples, seed=1):
    f = np.random.default_rng(seed).standard_normal((samples, A.shape[0]))
    return f, sla.splu(A).solve(f.T).T


def run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMI", "PMIX"))}
    return subprocess.run([sys.executable, "-m", "pddattn", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def pairs_1d(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.npz"
    f, u = solved_pairs(jump_1d(63), 200)
    np.savez(path, f=f, u=u)
    return path


def test_compare_on_pairs_made_elsewhere_prints_dd_global_and_fno(pairs_1d, tmp_path):
    pytest.importorskip("neuralop")
    p = run("compare", "--data", pairs_1d, "--subdomains", "4", "--rank", "4", "--global-rank", "8",
            "--baseline", "global,fno", "--fno-width", "8", "--fno-modes", "8", *FAST, "--out", tmp_path)
    assert p.returncode == 0, p.stderr
    rows = {line.split("|")[1].strip(): line for line in p.stdout.splitlines() if line.startswith("| ")}
    assert {"dd", "global", "fno"} <= set(rows)
    assert "rank-r regression on 180 pairs" in rows["global"] and "none (no A)" in rows["dd"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["problem"]["family"] == "data" and results["data"]["train"] == 180
    assert results["data"]["test"] == 20 and results["data"]["split"] == "held out"
    g = results["models"]["global"]
    assert 0 < g["capacity"] <= g["test_error"] * 1.05
    assert results["models"]["fno"]["parameters"] > 0 and np.isfinite(results["models"]["fno"]["test_error"])
    stored = torch.load(tmp_path / "dd" / "checkpoint.pt", weights_only=False)
    assert stored["config"]["data"] == str(pairs_1d)
    import hashlib
    assert stored["config"]["data_sha256"] == hashlib.sha256(pairs_1d.read_bytes()).hexdigest()


def test_a_changed_pairs_file_refuses_to_resume(tmp_path):
    path = tmp_path / "pairs.npz"
    f, u = solved_pairs(jump_1d(31), 40)
    np.savez(path, f=f, u=u)
    p = run("train", "--data", path, "--subdomains", "4", "--rank", "2", *FAST, "--out", tmp_path / "run")
    assert p.returncode == 0, p.stderr
    np.savez(path, f=f[:, ::-1], u=u[:, ::-1])
    p = run("train", "--resume", "--out", tmp_path / "run", "--steps", "30")
    assert p.returncode == 2 and "has changed since this run was started" in p.stderr, p.stderr


def test_grid_arrays_are_read_in_natural_order_and_a_problem_adds_a(tmp_path):
    nx, ny = 7, 5
    f, u = solved_pairs(laplace_2d(nx, ny), 30)
    path = tmp_path / "grid.npz"
    np.savez(path, f=f.reshape(30, ny, nx), u=u.reshape(30, ny, nx))
    cfg = TrainConfig.of(problem="poisson2d", data=str(path), subdomains="2x2", overlap=1, rank=2, steps=0, test_size=4)
    problem, _, sampler, _ = assemble(cfg.validate())
    assert problem.grid == (7, 5) and problem.has_operator
    F, U = sampler.evaluate(sampler.coefficients(8, 0, 3))
    # pddattn's A in the same order: f = A u to rounding, |A| |u| ~ kappa(A) |f| (tolerances.py).
    assert np.abs(problem.A @ U.T - F.T).max() < rounding(cond(problem.A), factor=10) * np.abs(F).max()
    data_only = TrainConfig.of(problem="data", data=str(path), subdomains="2x2", overlap=1, rank=2)
    problem, arch, _, _ = assemble(data_only.validate())
    assert problem.grid == (7, 5) and not problem.has_operator
    assert arch["decomposition"]["kind"] == "boxes" and arch["decomposition"]["coarse"] == "q1"


def test_the_gain_of_the_pairs_is_the_top_eigenvalue_of_a_inverse(tmp_path):
    A = jump_1d(40)
    f, u = solved_pairs(A, 120)  # more pairs than nodes: the data determine A^-1
    np.savez(tmp_path / "p.npz", f=f, u=u)
    pairs = load_pairs(tmp_path / "p.npz")
    lam = np.linalg.eigvalsh(A.toarray())[0]
    assert pairs.gain() == pytest.approx(1.0 / lam, rel=1e-8)


def test_reduced_rank_regression_equals_its_textbook_form():
    rng = np.random.default_rng(0)
    n, S, T, r = 30, 50, 12, 5
    W = rng.standard_normal((n, n)) @ np.diag(0.7 ** np.arange(n))
    F, Ft = rng.standard_normal((n, S)), rng.standard_normal((n, T))
    U, Ut = W @ F + 0.01 * rng.standard_normal((n, S)), W @ Ft
    ols = U @ np.linalg.pinv(F)
    P = np.linalg.svd(ols @ F)[0][:, :r]
    Y = P @ P.T @ ols @ Ft
    expect = np.mean(np.linalg.norm(Y - Ut, axis=0) / np.linalg.norm(Ut, axis=0))
    assert reduced_rank_error(F, U, Ft, Ut, r) == pytest.approx(expect, rel=1e-9)
    assert map_norm(data_gram(F, U)) == pytest.approx(np.linalg.svd(ols, compute_uv=False)[0], rel=1e-9)


def test_a_folder_is_read_memory_mapped_by_node(tmp_path):
    f, u = solved_pairs(jump_1d(31), 40)
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "f.npy", f)
    np.save(folder / "u.npy", u)
    np.savez(tmp_path / "same.npz", f=f, u=u)
    a, b = load_pairs(folder, seed=3), load_pairs(tmp_path / "same.npz", seed=3)
    assert isinstance(a.arrays["f"], np.memmap)
    rows = np.array([2, 3, 17, 30])
    for which in ("train", "test"):
        for x, y in zip(a.read(which, np.arange(4), rows), b.read(which, np.arange(4), rows)):
            assert np.array_equal(x, y)
    assert a.train_count == 36 and a.test_count == 4 and not set(a.train) & set(a.test)


def test_batches_and_split_are_functions_of_the_seed(pairs_1d):
    s1, s2 = (PairsSampler(load_pairs(pairs_1d, seed=0), seed=0) for _ in range(2))
    assert np.array_equal(s1.coefficients(8, 0, 5).index, s2.coefficients(8, 0, 5).index)
    assert not np.array_equal(s1.coefficients(8, 0, 5).index, s1.coefficients(8, 0, 6).index)
    assert not np.array_equal(load_pairs(pairs_1d, seed=0).test, load_pairs(pairs_1d, seed=1).test)


def test_given_test_pairs_are_the_test_set(tmp_path):
    f, u = solved_pairs(jump_1d(31), 30)
    np.savez(tmp_path / "p.npz", f=f[:20], u=u[:20], f_test=f[20:], u_test=u[20:])
    cfg = TrainConfig.of(data=str(tmp_path / "p.npz"), problem="data", subdomains=4, rank=2, steps=5, batch=4,
                      eval_every=5, warmup=1)
    model, summary = train(cfg)
    assert model.train_data.test_size == 10 and summary["data"] == "pairs"
    assert np.allclose(model.train_data.test[0].double().numpy().T, f[20:], rtol=EPS32)  # held in float32


def _bad(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make,extra,message", [
    (lambda p: _bad(p, "a.npz", f=np.ones((10, 8)), u=np.ones((10, 9))), [], "f has shape (10, 8) but u (10, 9)"),
    (lambda p: _bad(p, "b.npz", f=np.ones((10, 8))), [], "has no array u"),
    (lambda p: _bad(p, "c.npz", f=np.ones((10, 8)), u=np.ones((10, 8)), f_test=np.ones((2, 8))), [],
     "only one of f_test and u_test"),
    (lambda p: _bad(p, "d.npz", f=np.ones((1, 8)), u=np.ones((1, 8))), [], "too few for a test fraction"),
    (lambda p: _bad(p, "e.npz", f=np.ones((10, 4, 2)), u=np.ones((10, 4, 2))), ["--grid", "4x2"],
     "does not match the pairs' grid 2x4"),
    (lambda p: _bad(p, "f.npz", f=np.ones((10, 8)), u=np.ones((10, 8))), ["--grid", "9"], "has 9 nodes"),
    (lambda p: _bad(p, "g.npz", f=np.ones((10, 8)), u=np.where(np.eye(10, 8) > 0, np.nan, 1.0)), [],
     "u holds a NaN or inf (sample 0)"),
    (lambda p: _bad(p, "h.npz", f=np.ones((10, 8)), u=np.ones((10, 8))), ["--init", "schwarz"],
     "--init schwarz needs the matrix A"),
    (lambda p: _bad(p, "i.npz", f=np.ones((10, 8)), u=np.ones((10, 8))), ["--problem", "laplace1d", "--grid", "9"],
     "has 9 nodes"),
    (lambda p: _bad(p, "j.npz", f=np.ones((10, 8)), u=np.ones((10, 8))), ["--test-fraction", "1.5"],
     "--test-fraction must be in (0, 1)"),
    (lambda p: _bad(p, "k.npz", f=np.array([["a"] * 8] * 10), u=np.ones((10, 8))), [], "f and u must be real"),
    (lambda p: p / "missing.npz", [], "no such file or folder"),
    (lambda p: _bad(p, "l.npz", f=np.ones((10, 8)), u=np.zeros((10, 8))), [], "relative errors need u != 0"),
    (lambda p: _bad(p, "m.npz", f=np.ones((10, 8)), u=np.where(np.arange(10)[:, None] == 7, 0.0, np.ones((10, 8)))),
     [], "u is zero in 1 samples (the first: sample 7)"),
    (lambda p: _bad(p, "n.npz", f=np.ones((10, 8)), u=np.where(np.eye(10, 8) > 0, np.inf, 1.0)), [],
     "u holds a NaN or inf (sample 0)"),
    (lambda p: (p / "o.npz").write_bytes(b"not an archive") and p / "o.npz", [], "it is not a .npz archive"),
])
def test_bad_pairs_are_one_line_before_training(tmp_path, make, extra, message):
    p = run("train", "--data", make(tmp_path), "--subdomains", "2", "--rank", "2", *FAST, *extra)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and message in lines[0], p.stderr
    assert "training" not in p.stdout


def test_problem_data_without_pairs_and_fno_without_its_extra_are_one_line(monkeypatch):
    p = run("train", "--problem", "data", "--grid", "15")
    assert p.returncode == 2 and "--problem data learns from the user's pairs" in p.stderr
    import pddattn.fno as fno
    monkeypatch.setitem(sys.modules, "neuralop", None)  # as if the extra were not installed
    assert "needs the optional extra [fno]" in fno.fno_missing()
    with pytest.raises(ConfigurationError, match=r"pip install -e '\.\[fno\]'"):
        TrainConfig.of(model="fno").validate()


def test_the_fno_trains_on_the_same_batches_and_checkpoints(pairs_1d, tmp_path):
    pytest.importorskip("neuralop")
    cfg = TrainConfig.of(model="fno", data=str(pairs_1d), problem="data", steps=30, batch=8, eval_every=10,
                      warmup=2, lr=3e-3, fno_width=8, fno_modes=8)
    model, summary = train(cfg, out=tmp_path)
    first = summary["history"][0]["test_error"]
    assert summary["test_error"] < first  # it learns
    from pddattn.checkpoint import load_model
    again, _ = load_model(tmp_path / "checkpoint.pt", dtype=torch.float32)
    f = model.train_data.test[0]
    with torch.no_grad():
        assert torch.equal(model.matvec(f), again.matvec(f))


def test_a_model_learnt_from_pairs_preconditions_a_petsc_solve_of_their_operator(tmp_path):
    pytest.importorskip("petsc4py")
    n = 63
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csc") * (n + 1) ** 2
    f, u = solved_pairs(A, 300)
    np.savez(tmp_path / "p.npz", f=f, u=u)
    p = run("train", "--data", tmp_path / "p.npz", "--subdomains", "4", "--rank", "8", "--symmetric",
            "--steps", "300", "--batch", "32", "--eval-every", "100", "--dtype", "float64", "--out", tmp_path / "m")
    assert p.returncode == 0, p.stderr
    pc = ["-ksp_type", "gmres", "-ksp_pc_side", "right", "-pc_type", "composite", "-pc_composite_type",
          "multiplicative", "-pc_composite_pcs", "python,sor", "-sub_0_pc_python_type", "pddattn.petsc.DDAttentionPC",
          "-sub_0_pddattn_model", tmp_path / "m" / "checkpoint.pt"]
    p = run("solve", *pc)
    assert p.returncode == 2 and "learnt from pairs alone" in p.stderr, p.stderr
    p = run("solve", "--problem", "laplace1d", "--n", n, *pc)
    assert p.returncode == 0 and "met)" in p.stdout, p.stdout + p.stderr


def test_compare_at_a_budget_on_pairs_without_a(pairs_1d, tmp_path):
    """--budget sizes DD (non-symmetric: no A to say the map is), the global model and the FNO alike."""
    pytest.importorskip("neuralop")
    p = run("compare", "--data", pairs_1d, "--budget", "3000", "--baseline", "global,fno", *FAST, "--out", tmp_path)
    assert p.returncode == 0, p.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    sized, models = results["budget"], results["models"]
    assert sized["parameters"] == 3000 and sized["dd"]["config"]["symmetric"] is False
    for name in ("dd", "global", "fno"):
        assert models[name]["parameters"] == sized[name]["parameters"], name
    assert models["dd"]["parameters"] <= 3000 and sized["global"]["config"]["rank"] == round(3000 / (2 * 63))
    assert "--budget 3,000: dd" in p.stdout


def test_budget_with_a_size_given_by_hand_is_one_line(pairs_1d, tmp_path):
    for extra in (["--rank", "4"], ["--global-rank", "8"], ["--subdomains", "4"], ["--levels", "3"]):
        p = run("compare", "--data", pairs_1d, "--budget", "3000", *extra, *FAST, "--out", tmp_path)
        assert p.returncode != 0 and p.stderr.strip().count("\n") == 0, p.stderr
        assert f"drop {extra[0]}" in p.stderr
