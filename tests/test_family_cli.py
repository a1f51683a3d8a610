"""One model for a family, as users run it: `train --factors generated`, `apply` (with --refine), the PC on
operators it never saw, a user's own triplets and every bad input."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl

from pddattn import cli, family_run
from pddattn.problems import make_problem
from pddattn.problems.triplets import operator_of_field, read_triplets
from pddattn.refine import refine
from tolerances import cond, rounding

SIDE = 17  # the full grid of the triplets: 15 x 15 unknowns, as the training grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("fam") / "run"
    rc = cli.main(["train", "--factors", "generated", "--grid", "15x15", "--subdomains", "2x2", "--operators", "3",
                   "--steps", "30", "--test-operators", "2", "--rank", "4", "--generator-width", "8",
                   "--generator-depth", "2", "--out", str(out)])
    assert rc == 0
    return out / "checkpoint.pt"


def _fields(count, side, seed=7):
    """Fields from another generator than the family's: a thresholded random sum of sines at the nodes."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, side)
    X, Y = np.meshgrid(x, x)
    out = []
    for _ in range(count):
        mu = sum(rng.normal() / (k * k + m * m) * np.sin(np.pi * k * X) * np.cos(np.pi * m * Y + rng.uniform(0, 6))
                 for k in range(1, 5) for m in range(0, 5))
        out.append(np.where(mu > 0, 12.0, 3.0))
    return np.array(out)


def _triplets(path, count=2, side=SIDE, **override):
    a = _fields(count, side)
    u = np.zeros_like(a)
    for b in range(count):
        u[b, 1:-1, 1:-1] = spl.spsolve(operator_of_field(a[b]).tocsc(), np.ones((side - 2) ** 2)).reshape(
            side - 2, side - 2)
    arrays = {"a": a, "f": np.ones_like(a), "u": u, **override}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_a_field_of_ones_gives_the_familys_constant_operator():
    A = operator_of_field(np.ones((9, 9)))
    B = make_problem("diffusion2d", (7, 7)).A
    assert abs(A - B).max() <= rounding(factor=4) * abs(B).max()


def test_the_edge_coefficient_is_the_mean_of_its_two_nodes():
    a = np.arange(1.0, 26.0).reshape(5, 5)
    A = operator_of_field(a).toarray()
    h2 = 1.0 / 16
    # node (1, 1) is unknown 0; its east neighbour (1, 2) is unknown 1, its north one (2, 1) unknown 3
    assert np.isclose(A[0, 1], -(a[1, 1] + a[1, 2]) / 2 / h2) and np.isclose(A[0, 3], -(a[1, 1] + a[2, 1]) / 2 / h2)
    ring = (a[1, 1] + a[0, 1]) / 2 + (a[1, 1] + a[1, 0]) / 2
    assert np.isclose(A[0, 0], (ring + (a[1, 1] + a[1, 2]) / 2 + (a[1, 1] + a[2, 1]) / 2) / h2)


def test_refine_is_cg_on_true_residuals():
    A = make_problem("laplace1d", (200,)).A
    F = np.random.default_rng(0).standard_normal((200, 3))
    _, history = refine(A, F, np.zeros_like(F), lambda R: spl.spsolve(A.tocsc(), R), 1)
    assert history[-1].max() <= rounding(cond(A.toarray()), 10)
    U, history = refine(A, F, np.zeros_like(F), lambda R: R / A.diagonal()[:, None], 400, rtol=1e-10)
    true = np.linalg.norm(F - A @ U, axis=0) / np.linalg.norm(F, axis=0)
    assert np.allclose(history[-1], true) and true.max() <= 1e-10 and len(history) <= 201


def test_training_a_family_model_reports_held_out_errors_beside_schwarz(trained, capsys):
    from pddattn.family_run import load
    spec, payload = load(trained)
    assert spec.operators == 3 and spec.box == 8 and set(payload["summary"]["AS"]) == {"K=1"}
    assert (trained.parent / "log.jsonl").read_text().count("loss") >= 1


def test_apply_refines_a_users_own_fields_to_a_true_residual_below_1e_8(trained, tmp_path, capsys):
    data = _triplets(tmp_path / "t.npz")
    out = tmp_path / "u.npy"
    assert cli.main(["apply", "--model", str(trained), "--data", str(data), "--out", str(out), "--refine", "100",
                     "--rtol", "1e-9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("operator 0: model answer") and "after" in lines[0]
    U, t = np.load(out), read_triplets(data)
    assert U.shape == (2, SIDE, SIDE) and np.all(U[:, 0] == 0)
    for b, A in enumerate(t.operators()):
        u = U[b, 1:-1, 1:-1].ravel()
        assert np.linalg.norm(t.f[b] - A @ u) / np.linalg.norm(t.f[b]) < 1e-8


def test_apply_serves_a_finer_grid_from_a_matrix_file(trained, tmp_path, capsys):
    p = make_problem("diffusion2d", (31, 31), "darcy", seed=4242)
    sp.save_npz(tmp_path / "A.npz", p.A)
    np.save(tmp_path / "f.npy", np.ones((2, p.n)))
    assert cli.main(["apply", "--model", str(trained), "--matrix", str(tmp_path / "A.npz"), "--rhs",
                     str(tmp_path / "f.npy"), "--out", str(tmp_path / "u.npy"), "--refine", "200", "--rtol",
                     "1e-9"]) == 0
    U = np.load(tmp_path / "u.npy")
    assert U.shape == (2, p.n)
    assert np.linalg.norm(1 - p.A @ U[0]) / np.sqrt(p.n) < 1e-8


@pytest.mark.parametrize("case,message", [
    ("tridiagonal", "5-point stencil"),
    ("nine-point", "5-point stencil"),
    ("not square", "not a square grid"),
])
def test_a_model_applied_to_another_family_is_refused_in_one_line(trained, tmp_path, capsys, case, message):
    A = {"tridiagonal": make_problem("laplace1d", (225,)).A,
         "nine-point": sp.kron(sp.eye(15), sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], (15, 15))) @
         sp.kron(sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], (15, 15)), sp.eye(15)) + 8 * sp.eye(225),
         "not square": make_problem("laplace1d", (200,)).A}[case]
    sp.save_npz(tmp_path / "A.npz", sp.csr_matrix(A))
    np.save(tmp_path / "f.npy", np.ones(A.shape[0]))
    rc = cli.main(["apply", "--model", str(trained), "--matrix", str(tmp_path / "A.npz"), "--rhs",
                   str(tmp_path / "f.npy"), "--out", str(tmp_path / "u.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "u.npy").exists()


@pytest.mark.parametrize("override,message", [
    ({"u": np.zeros((2, SIDE, SIDE - 1))}, "u has shape"),
    ({"f": np.full((2, SIDE, SIDE), np.nan)}, "NaN"),
    ({"a": -np.ones((2, SIDE, SIDE))}, "positive"),
    ({"a": None}, "no array 'a'"),
    ({"f": np.ones((3, SIDE, SIDE))}, "3 samples"),
])
def test_a_bad_triplet_file_is_one_line(trained, tmp_path, capsys, override, message):
    data = _triplets(tmp_path / "t.npz", **override) if "a" not in override or override["a"] is None else None
    if data is None:
        np.savez(tmp_path / "t.npz", a=override["a"], f=np.ones((2, SIDE, SIDE)))
        data = tmp_path / "t.npz"
    rc = cli.main(["apply", "--model", str(trained), "--data", str(data), "--out", str(tmp_path / "u.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_bad_uses_of_the_family_commands_are_one_line(trained, tmp_path, capsys):
    cases = [(["train", "--factors", "generated", "--levels", "3"], "--levels does not apply"),
             (["train", "--operators", "5"], "--operators belongs to --factors generated"),
             (["train", "--factors", "generated", "--problem", "laplace1d", "--grid", "63"], "2D stencil families"),
             (["apply", "--model", str(trained), "--out", str(tmp_path / "u.npy")], "give the right-hand sides"),
             (["apply", "--model", str(tmp_path / "none.pt"), "--rhs", "f.npy", "--matrix", "A.npz", "--out", "u"],
              "no checkpoint file"),
             (["apply", "--model", str(trained), "--data", "t.npz", "--matrix", "A.npz", "--out", "u"], "one way")]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_the_pc_on_operators_it_never_saw_with_new_values_of_the_same_mat(trained, tmp_path):
    """A user's petsc4py program on a held-out operator, then new values of the same Mat (a values update)."""
    from test_mpirun import MPIRUN, ROOT, env
    pytest.importorskip("petsc4py")
    if MPIRUN is None:
        pytest.skip("mpirun not installed")
    sp.save_npz(tmp_path / "A.npz", make_problem("diffusion2d", (15, 15), "darcy", seed=5555).A)
    results = {}
    for ranks in (1, 2):
        cmd = [MPIRUN, "--oversubscribe", "-n", str(ranks), sys.executable, "tests/user_family_program.py",
               str(tmp_path / "A.npz"), "-ksp_type", "cg", "-pc_type", "python", "-pc_python_type",
               "pddattn.petsc.DDAttentionPC", "-pddattn_model", str(trained), "-ksp_norm_type", "unpreconditioned",
               "-ksp_rtol", "1e-9"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300, cwd=ROOT)
        assert p.returncode == 0 and "SEGV" not in p.stdout + p.stderr, p.stdout[-2000:] + p.stderr[-2000:]
        lines = dict(line.split(": ", 1) for line in p.stdout.splitlines() if ": " in line)
        for name in ("first", "scaled"):
            reason, its, true = lines[name].split()[1], int(lines[name].split()[3]), float(lines[name].split()[5])
            assert reason == "2" and true < 1e-8, lines
            results[ranks, name] = its
        assert "setups built 1 refactored 1" in p.stdout
    # the model is scale-equivariant (M(cA)^-1 = M(A)^-1 / c): the same iterations on 2.5 A
    assert abs(results[1, "first"] - results[1, "scaled"]) <= 1 and abs(results[1, "first"] - results[2, "first"]) <= 2


def test_training_under_mpirun_writes_the_serial_model(trained, tmp_path):
    """`mpirun -n 2 pddattn train --factors generated` (boxes shared by the ranks) equals the serial run."""
    import torch
    from test_mpirun import MPIRUN, ROOT, env
    if MPIRUN is None:
        pytest.skip("mpirun not installed")
    argv = ["train", "--factors", "generated", "--grid", "15x15", "--subdomains", "2x2", "--operators", "3",
            "--steps", "30", "--test-operators", "2", "--rank", "4", "--generator-width", "8",
            "--generator-depth", "2", "--out", str(tmp_path / "mpi")]
    p = subprocess.run([MPIRUN, "--oversubscribe", "-n", "2", sys.executable, "-m", "pddattn.cli", *argv],
                       capture_output=True, text=True, env=env(), timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("generated factors:") == 1  # the first rank reports
    a = torch.load(trained, weights_only=True)["state"]
    b = torch.load(tmp_path / "mpi" / "checkpoint.pt", weights_only=True)["state"]
    from tolerances import adam_steps
    assert max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a) <= adam_steps(30)


def test_the_darcy_data_are_regenerated_by_their_recipe(tmp_path, capsys):
    """`pddattn data darcy`: fields a in {3, 12}, f = 1, u solved on the fine grid and subsampled; u is
    close to the coarse grid's own discrete solution (the discretization error, a few per cent at 21 of 81),
    which a transposed or shifted subsampling would not be."""
    assert cli.main(["data", "darcy", "--grid", "21", "--resolution", "81", "--train", "3", "--test", "2",
                     "--out", str(tmp_path / "d.h5")]) == 0
    assert "share of a = 12" in capsys.readouterr().out
    for split, count in (("train", 3), ("test", 2)):
        t = read_triplets(tmp_path / "d.h5", split)
        assert t.a.shape == (count, 21, 21) and set(np.unique(t.a)) <= {3.0, 12.0} and np.all(t.f == 1)
        for b, A in enumerate(t.operators()):
            coarse = spl.spsolve(A.tocsc(), t.f[b])
            assert np.linalg.norm(coarse - t.u[b]) / np.linalg.norm(t.u[b]) < 0.05
    assert cli.main(["data", "darcy", "--grid", "21", "--resolution", "81", "--train", "2", "--test", "1",
                     "--out", str(tmp_path / "d.npz")]) == 0
    z = np.load(tmp_path / "d.npz")
    assert z["a_test"].shape == (1, 21, 21) and np.array_equal(z["a"][:2], read_triplets(tmp_path / "d.h5").a[:2])


def test_a_grid_that_does_not_subsample_the_fine_one_is_one_line(tmp_path, capsys):
    assert cli.main(["data", "darcy", "--grid", "86", "--out", str(tmp_path / "d.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a subsampling" in err[0]


def test_a_family_is_learned_from_a_users_triplet_file_and_tested_on_its_test_split(tmp_path, capsys):
    data = tmp_path / "d.h5"
    assert cli.main(["data", "darcy", "--grid", "17", "--resolution", "65", "--train", "3", "--test", "2",
                     "--out", str(data)]) == 0
    out = tmp_path / "run"
    assert cli.main(["train", "--factors", "generated", "--data", str(data), "--subdomains", "2x2", "--steps", "10",
                     "--rank", "4", "--generator-width", "8", "--generator-depth", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 training operators" in text and "held-out operators (2)" in text and "exact discrete solve" in text
    from pddattn.family_run import load
    spec, payload = load(out / "checkpoint.pt")
    assert spec.grid == (15, 15) and payload["summary"]["test_operators"] == 2
    floor = payload["summary"]["discrete_solution"]
    assert 0 < floor < 0.05  # u from the 65^2 grid: the 17^2 discretization's own error
    assert cli.main(["apply", "--model", str(out / "checkpoint.pt"), "--data", str(data), "--split", "test",
                     "--out", str(tmp_path / "u.npy"), "--refine", "60", "--rtol", "1e-10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("error" in line for line in lines[:2])


def test_data_replicas_train_on_different_operators_and_equal_serial(tmp_path):
    """`mpirun -n 4 ... --data-parallel 2`: two replicas, each sharing its boxes over 2 ranks, split every
    step's 2 operators; the model equals the serial run with --operators-per-step 2."""
    import torch
    from test_mpirun import MPIRUN, ROOT, env
    from tolerances import adam_steps
    if MPIRUN is None:
        pytest.skip("mpirun not installed")
    argv = ["train", "--factors", "generated", "--grid", "15x15", "--subdomains", "2x2", "--operators", "3",
            "--steps", "12", "--test-operators", "2", "--rank", "4", "--generator-width", "8",
            "--generator-depth", "2", "--data", "solve", "--batch", "4"]
    assert cli.main(argv + ["--operators-per-step", "2", "--out", str(tmp_path / "serial")]) == 0
    p = subprocess.run([MPIRUN, "--oversubscribe", "-n", "4", sys.executable, "-m", "pddattn.cli", *argv,
                        "--data-parallel", "2", "--out", str(tmp_path / "mpi")],
                       capture_output=True, text=True, env=env(), timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    a = torch.load(tmp_path / "serial" / "checkpoint.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "mpi" / "checkpoint.pt", weights_only=True)["state"]
    assert max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a) <= adam_steps(12)
    assert cli.main(argv + ["--operators-per-step", "1", "--data-parallel", "1", "--out", str(tmp_path / "x")]) == 0


def test_a_free_factor_model_applies_to_its_own_matrix_only(tmp_path, capsys):
    run = tmp_path / "free"
    assert cli.main(["train", "--problem", "diffusion2d", "--grid", "15x15", "--subdomains", "2x2", "--rank", "8",
                     "--symmetric", "--data", "solve", "--steps", "5", "--test-size", "8", "--batch", "8",
                     "--dtype", "float64", "--out", str(run)]) == 0
    np.save(tmp_path / "f.npy", np.ones(225))
    capsys.readouterr()
    assert cli.main(["apply", "--model", str(run / "checkpoint.pt"), "--rhs", str(tmp_path / "f.npy"),
                     "--out", str(tmp_path / "u.npy"), "--refine", "100", "--rtol", "1e-10"]) == 0
    U, A = np.load(tmp_path / "u.npy"), make_problem("diffusion2d", (15, 15)).A
    assert U.shape == (225,) and np.linalg.norm(1 - A @ U) / 15 < 1e-9
    sp.save_npz(tmp_path / "B.npz", 2 * A)
    assert cli.main(["apply", "--model", str(run / "checkpoint.pt"), "--matrix", str(tmp_path / "B.npz"), "--rhs",
                     str(tmp_path / "f.npy"), "--out", str(tmp_path / "v.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its own matrix" in err[0]


def test_pddattn_solve_takes_a_family_model_on_a_users_matrix_file(trained, tmp_path):
    """A user's field from another generator, as a matrix file: `pddattn solve -pddattn_model` reaches a true
    1e-8 (the operator's square grid inferred)."""
    pytest.importorskip("petsc4py")
    from test_mpirun import ROOT, env
    a = _fields(1, SIDE, seed=11)[0]
    sp.save_npz(tmp_path / "A.npz", operator_of_field(a))
    p = subprocess.run([sys.executable, "-m", "pddattn.cli", "solve", "--matrix", str(tmp_path / "A.npz"),
                        "--rhs", "solve", "-ksp_type", "cg", "-ksp_norm_type", "unpreconditioned", "-pc_type",
                        "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_model", str(trained)],
                       capture_output=True, text=True, env=env(), timeout=300, cwd=ROOT)
    assert p.returncode == 0 and "(tolerance 1.0e-08 on the true residual: met)" in p.stdout, p.stdout + p.stderr


def _train_small(out, grid, boxes, *flags):
    """A 5-step family model of rank 4 on two operators (a tiny generator): the CLI's return code."""
    return cli.main(["train", "--factors", "generated", "--grid", grid, "--subdomains", boxes, "--operators", "2",
                     "--steps", "5", "--test-operators", "1", "--rank", "4", "--generator-width", "8",
                     "--generator-depth", "2", *flags, "--out", str(out)])


def _applies_to_a_users_fields(out, tmp_path, capsys, refine):
    data = _triplets(tmp_path / "t.npz", count=1)
    assert cli.main(["apply", "--model", str(out / "checkpoint.pt"), "--data", str(data), "--out",
                     str(tmp_path / "u.npy"), "--refine", str(refine), "--rtol", "1e-10"]) == 0
    assert "residual" in capsys.readouterr().out


def test_a_model_with_generated_coarse_functions_trains_applies_and_preconditions(tmp_path, capsys):
    out = tmp_path / "gc"
    assert _train_small(out, "15x15", "2x2", "--coarse-functions", "2") == 0
    _applies_to_a_users_fields(out, tmp_path, capsys, 100)
    assert cli.main(["train", "--factors", "generated", "--coarse-functions", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--coarse-functions must be 0 or more" in capsys.readouterr().err


def test_a_model_with_a_generated_coarse_block_trains_applies_and_says_so_in_ksp_view(tmp_path, capsys):
    out = tmp_path / "gb"
    assert _train_small(out, "23x23", "3x3", "--coarse-block", "generated", "--coarse-rank", "3") == 0
    spec, payload = family_run.load(out / "checkpoint.pt")
    assert (spec.coarse_block, spec.coarse_rank) == ("generated", 3) and "coarse_generator.net.4.weight" in payload["state"]
    _applies_to_a_users_fields(out, tmp_path, capsys, 200)
    for flags, message in ((["--coarse-rank", "3"], "--coarse-rank applies to --factors generated with --coarse-block "
                                                    "generated only"),
                           (["--coarse-block", "generated", "--coarse-functions", "2"], "needs --coarse q1 and no "
                                                                                        "--coarse-functions")):
        assert cli.main(["train", "--factors", "generated", *flags, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["train", "--coarse-block", "generated", "--out", str(tmp_path / "y")]) == 2
    assert "--coarse-block belongs to --factors generated" in capsys.readouterr().err


def test_ritz_local_factors_train_and_a_spec_stored_before_them_reads_as_direct(tmp_path, capsys):
    """--local-factors ritz trained for the preconditioner (--loss condition); specs stored without them read as
    the direct form."""
    out = tmp_path / "rz"
    assert _train_small(out, "23x23", "3x3", "--local-factors", "ritz", "--loss", "condition") == 0
    spec = family_run.load(out / "checkpoint.pt")[0]
    assert (spec.local, spec.loss) == ("ritz", "condition")
    old = {k: v for k, v in family_run.FamilySpec().to_dict().items() if k != "local"}
    assert family_run.FamilySpec.from_dict(old).local == "direct"
    assert cli.main(["train", "--local-factors", "ritz", "--out", str(tmp_path / "y")]) == 2
    assert "--local-factors belongs to --factors generated" in capsys.readouterr().err
