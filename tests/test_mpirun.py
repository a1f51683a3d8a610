"""Whole jobs under a real mpirun, from the serial suite: launch, failure, launch script.

Every mpirun gets a timeout, so a hang fails the test instead of stalling CI.
"""
import os
import shutil
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tolerances import adam_steps

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed")
TINY = ["--n", "48", "--subdomains", "12", "--overlap", "2", "--rank", "3", "--steps", "20", "--batch", "8",
        "--eval-every", "10", "--test-size", "8"]


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMI", "PMIX"))}
    e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
             PYTHONPATH=str(ROOT))
    return e


def mpirun(n, *args, timeout=120):
    cmd = [MPIRUN, "--oversubscribe", "-n", str(n), sys.executable, *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, cwd=ROOT)
    return p, time.perf_counter() - t0


@pytest.mark.parametrize("n,args,message", [
    (3, ["--n", "40", "--subdomains", "2"], "3 domain ranks but only N=2 subdomains"),
    (3, ["--data-parallel", "2"], "--data-parallel 2 does not divide the 3 ranks"),
    (3, ["--problem", "poisson2d", "--grid", "15x15", "--subdomains", "2x2"],
     "3 domain ranks do not form a Px x Py process grid over 2x2 boxes"),
    (2, ["--model", "global"], "the global model runs data-parallel only"),
    (2, ["--rank", "0"], "--rank must be a positive integer"),
])
def test_undistributable_configurations_end_every_rank_with_one_line(n, args, message):
    p, _ = mpirun(n, "-m", "pddattn", "train", *args)
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("pddattn: error:")]
    assert errors == [f"pddattn: error: {errors[0].split('error: ', 1)[1]}"] and message in errors[0], p.stderr
    assert "Traceback" not in p.stderr


def test_an_exception_on_one_rank_ends_the_job_within_seconds(tmp_path):
    p, seconds = mpirun(3, "tests/mpi_driver.py", "1", "5", "--", "train", *TINY, "--steps", "100000",
                        "--out", str(tmp_path), timeout=90)
    assert p.returncode != 0
    assert "injected failure on rank 1 at step 5" in p.stderr
    assert "rank 1 failed; aborting all 3 ranks" in p.stderr
    assert seconds < 60


def test_distributed_train_writes_a_checkpoint_that_resumes_serially(tmp_path):
    p, _ = mpirun(3, "-m", "pddattn", "train", *TINY, "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("test error") == 1  # one report, from rank 0
    p = subprocess.run([sys.executable, "-m", "pddattn", "train", "--resume", "--out", str(tmp_path),
                        "--steps", "30"], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "after 30 steps" in p.stdout


LAUNCH_ARGS = "--n 48 --subdomains 12 --overlap 2 --rank 3 --batch 8 --eval-every 10 --test-size 8"


def launch(script, tmp_path, extra_env, runs=2):
    """Run a launch script twice with the same OUT: the second run must resume."""
    e = env()
    e.update(OUT=str(tmp_path / "run"), PYTHON=sys.executable, VENV=str(tmp_path / "no-venv"), **extra_env)
    outputs = []
    for i in range(runs):
        e["PDDATTN_ARGS"] = LAUNCH_ARGS + (" --steps 30" if i else " --steps 20")
        p = subprocess.run(["bash", script], capture_output=True, text=True, env=e, cwd=ROOT, timeout=240)
        assert p.returncode == 0, p.stdout + p.stderr
        outputs.append(p.stdout + p.stderr)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert "resuming from" not in outputs[0] and "resuming from" in outputs[1]
    assert "after 30 steps" in outputs[1]
    return outputs


def fake_bin(tmp_path, name, body):
    """A stand-in for a cluster command, first on PATH, with python -> this interpreter."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text("#!/usr/bin/env bash\n" + body + "\n")
    (bindir / name).chmod(0o755)
    python = bindir / "python"
    if not python.exists():  # a wrapper, not a symlink: a venv is found from the invoked path
        python.write_text(f'#!/usr/bin/env bash\nexec {sys.executable} "$@"\n')
        python.chmod(0o755)
    return f"{bindir}:{os.environ['PATH']}"


def test_mpirun_launch_script_trains_on_two_ranks_and_resumes(tmp_path):
    out = launch("launch/mpirun.sh", tmp_path, {})
    assert "test error" in out[0]


def test_slurm_script_runs_its_srun_line_and_resumes(tmp_path):
    # srun stands in for SLURM's launcher: the same ranks through mpirun.
    path = fake_bin(tmp_path, "srun", f'exec {MPIRUN} --oversubscribe -n "$SLURM_NTASKS" "$@"')
    launch("launch/slurm.sbatch", tmp_path, {"PATH": path, "SLURM_NTASKS": "2", "SLURM_JOB_ID": "42",
                                             "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_JOB_NAME": "test"})


def test_pbs_script_runs_its_mpiexec_line_and_resumes(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("localhost\nlocalhost\n")
    path = fake_bin(tmp_path, "unused", "true")  # only for python -> this interpreter
    launch("launch/pbs.sh", tmp_path, {"PATH": path, "PBS_NODEFILE": str(nodefile), "PBS_O_WORKDIR": str(ROOT),
                                       "PBS_JOBNAME": "test"})


SOLVE = ["-m", "pddattn", "solve", "-ksp_type", "cg", "-ksp_norm_type", "unpreconditioned"]


PC_MODEL = ["--n", "255", "--subdomains", "8", "--overlap", "4", "--rank", "40", "--symmetric", "--init", "schwarz",
            "--data", "probe", "--dtype", "float64"]


def pc_model(out, *args):
    p = subprocess.run([sys.executable, "-m", "pddattn", "train", *PC_MODEL, *args, "--out", str(out)],
                       capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    return str(out / "checkpoint.pt")


@pytest.fixture(scope="module")
def trained_preconditioner(tmp_path_factory):
    """A preconditioner trained by `pddattn train` on kappa(M A), from the Schwarz start."""
    return pc_model(tmp_path_factory.mktemp("pc"), "--loss", "condition", "--steps", "30", "--lr", "0.003",
                    "--warmup", "5", "--eval-every", "10")


def iterations_of(stdout):
    return int(re.search(r"converged reason -?\d+: (\d+) iterations", stdout).group(1))


def cg_iterations(model, ranks=1):
    p, _ = mpirun(ranks, *SOLVE, "-ksp_rtol", "1e-8", "-pc_type", "python", "-pc_python_type",
                  "pddattn.petsc.DDAttentionPC", "-pddattn_model", model)
    assert p.returncode == 0 and "converged reason 2" in p.stdout, p.stdout + p.stderr
    return iterations_of(p.stdout)


def test_the_condition_trained_preconditioner_beats_its_schwarz_start(trained_preconditioner, tmp_path):
    schwarz = cg_iterations(pc_model(tmp_path, "--steps", "0"))
    trained = cg_iterations(trained_preconditioner)
    assert trained < schwarz, (trained, schwarz)


def test_condition_loss_trains_data_parallel(tmp_path):
    p, _ = mpirun(2, "-m", "pddattn", "train", *PC_MODEL, "--loss", "condition", "--steps", "4", "--warmup", "1",
                  "--eval-every", "2", "--data-parallel", "2", "--out", str(tmp_path), timeout=180)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("kappa(M A) ~") == 1


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_solve_with_the_trained_preconditioner_converges(trained_preconditioner, ranks):
    p, _ = mpirun(ranks, *SOLVE, "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC",
                  "-pddattn_model", trained_preconditioner, "-ksp_monitor")
    assert p.returncode == 0, p.stderr
    assert "converged reason 2" in p.stdout or "converged reason 3" in p.stdout, p.stdout
    iterations = iterations_of(p.stdout)
    assert "(tolerance 1.0e-08 on the true residual: met)" in p.stdout
    assert iterations < 40 and "KSP Residual norm" in p.stdout  # -ksp_monitor lines; no PC: 255 iterations


def test_solve_composes_with_petsc_preconditioners(trained_preconditioner):
    p, _ = mpirun(2, *SOLVE, "-pc_type", "composite", "-pc_composite_pcs", "python,jacobi",
                  "-sub_0_pc_python_type", "pddattn.petsc.DDAttentionPC", "-sub_0_pddattn_model",
                  trained_preconditioner, "-ksp_view")
    assert p.returncode == 0, p.stderr
    assert "type: composite" in p.stdout and "DD attention preconditioner" in p.stdout
    assert "converged reason" in p.stdout


def test_solve_errors_end_every_rank_cleanly(tmp_path):
    p, seconds = mpirun(2, *SOLVE, "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC",
                        "-pddattn_model", str(tmp_path / "missing.pt"), timeout=60)
    assert p.returncode != 0 and "pddattn: error: no checkpoint file" in p.stderr
    assert p.stderr.count("pddattn: error:") == 1 and "Traceback" not in p.stderr


@pytest.fixture(scope="module")
def low_rank_model(tmp_path_factory):
    """A rank-deficient DD model (local rank 4 on subdomains of 40): M^-1 is singular."""
    out = tmp_path_factory.mktemp("lowrank")
    p = subprocess.run([sys.executable, "-m", "pddattn", "train", "--n", "255", "--subdomains", "8", "--overlap", "4",
                        "--rank", "4", "--init", "schwarz", "--steps", "0", "--dtype", "float64", "--out", str(out)],
                       capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    return str(out / "checkpoint.pt")


@pytest.mark.parametrize("side", ["left", "default"])
def test_gmres_on_a_singular_preconditioner_is_not_reported_as_success(low_rank_model, side):
    """Left-preconditioned GMRES 'converges' on M (b - A x); the true residual decides, and it misses.

    By default pddattn makes GMRES precondition from the right (a true-residual test), which a
    singular M^-1 cannot pass either.
    """
    chosen = ["-ksp_pc_side", "left"] if side == "left" else []
    p, _ = mpirun(2, "-m", "pddattn", "solve", "-ksp_type", "gmres", *chosen, "-pc_type", "python",
                  "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_model", low_rank_model,
                  "-pddattn_smoother", "none")  # the singular model alone, as asked
    assert p.returncode != 0, p.stdout
    assert p.stdout.count("model is rank-deficient") == 1, p.stdout
    errors = [line for line in p.stderr.splitlines() if line.startswith("pddattn: error:")]
    assert len(errors) == 1 and "true relative residual" in errors[0] and "Traceback" not in p.stderr
    if side == "left":
        assert "KSP converged reason 2" in p.stdout and "preconditioner is singular" in errors[0], p.stdout


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory):
    """A user's matrix: diffusion2d jump:1e4 at 31^2 as a PETSc binary file."""
    path = tmp_path_factory.mktemp("matrix") / "A.petsc"
    code = ("from petsc4py import PETSc; from pddattn.petsc import petsc_matrix; from pddattn.problems import "
            "make_problem; A = petsc_matrix(make_problem('diffusion2d', (31, 31), 'jump:1e4').A, PETSc.COMM_SELF); "
            f"A.view(PETSc.Viewer().createBinary('{path}', 'w'))")
    subprocess.run([sys.executable, "-c", code], check=True, env=env(), cwd=ROOT, timeout=120)
    return str(path)


@pytest.mark.parametrize("options,verdict", [
    ([], "on the true residual: met"),
    (["-ksp_norm_type", "preconditioned"], "accepted up to 1000x"),
    (["-ksp_pc_side", "right", "-ksp_type", "gmres"], "on the true residual: met"),
])
def test_a_standard_petsc_solve_of_a_users_matrix_is_a_success(matrix_file, options, verdict):
    p, _ = mpirun(2, "-m", "pddattn", "solve", "--matrix", matrix_file, "-ksp_type", "cg", "-pc_type", "gamg",
                  *options)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "converged reason 2" in p.stdout and verdict in p.stdout, p.stdout


def test_a_scipy_npz_matrix_is_solved_from_each_ranks_rows(tmp_path):
    """--matrix A.npz under mpirun: rank 0 reads it and sends each rank its rows (mat_read); DD attention from
    the operator converges on the true residual. A non-symmetric one is one line on every rank."""
    import scipy.sparse as sp
    from pddattn.problems import make_problem
    A = make_problem("diffusion2d", (31, 31), "jump:1e4").A
    sp.save_npz(tmp_path / "A.npz", A)
    p, _ = mpirun(3, "-m", "pddattn", "solve", "--matrix", str(tmp_path / "A.npz"), "-ksp_type", "cg", "-pc_type",
                  "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains", "6")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "converged reason 2" in p.stdout and "on the true residual: met" in p.stdout, p.stdout
    sp.save_npz(tmp_path / "B.npz", sp.triu(A).tocsr())
    p, _ = mpirun(2, "-m", "pddattn", "solve", "--matrix", str(tmp_path / "B.npz"), "-ksp_type", "cg")
    errors = [line for line in p.stderr.splitlines() if line.startswith("pddattn: error:")]
    assert p.returncode != 0 and len(errors) == 1 and "is not symmetric" in errors[0], p.stderr


def test_a_singular_model_gets_jacobi_added_by_default_and_converges_truly(low_rank_model):
    p, _ = mpirun(2, "-m", "pddattn", "solve", "-ksp_type", "cg", "-pc_type", "python",
                  "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_model", low_rank_model)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "M^-1 + D^-1" in p.stdout and "met)" in p.stdout, p.stdout


def test_a_singular_preconditioner_composed_with_sor_converges_truly(low_rank_model):
    p, _ = mpirun(2, "-m", "pddattn", "solve", "-ksp_type", "gmres", "-ksp_pc_side", "right", "-pc_type", "composite",
                  "-pc_composite_type", "multiplicative", "-pc_composite_pcs", "python,sor",
                  "-sub_0_pc_python_type", "pddattn.petsc.DDAttentionPC", "-sub_0_pddattn_model", low_rank_model)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "met)" in p.stdout


@pytest.mark.parametrize("make_rhs,message", [
    (lambda d: str(d / "missing.npy"), "does not exist"),
    (lambda d: str(d / "missing.bin"), "does not exist"),
    (lambda d: (np.save(d / "nan.npy", np.full(255, np.nan)), str(d / "nan.npy"))[1], "NaN or infinite"),
    (lambda d: ((d / "junk.bin").write_bytes(b"not a vector"), str(d / "junk.bin"))[1], "not a PETSc binary Vec"),
])
def test_bad_right_hand_sides_are_one_line_on_every_rank(tmp_path, make_rhs, message):
    p, _ = mpirun(2, "-m", "pddattn", "solve", "--n", "255", "--rhs", make_rhs(tmp_path), "-ksp_type", "cg",
                  timeout=120)
    errors = [line for line in p.stderr.splitlines() if line.startswith("pddattn: error:")]
    assert p.returncode != 0 and len(errors) == 1 and message in errors[0], p.stderr
    assert "Traceback" not in p.stderr and "PETSC ERROR" not in p.stderr, p.stderr


# ------------------------------------------------- a user's program, DDAttentionPC from the operator
EXAMPLE = ["examples/diffusion2d_dmda.py", "-ksp_type", "cg", "-pc_type", "python", "-pc_python_type",
           "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains", "4x4", "-pddattn_overlap", "2",
           "-ksp_norm_type", "unpreconditioned"]


def _true_residual(text):
    return float(re.search(r"true relative residual[^0-9]*([0-9.]+e[+-][0-9]+)", text).group(1))


def test_the_users_dmda_program_reaches_ddattention_through_options_alone():
    """The issue's done-when command: variable coefficients (1e4 channels), 4 ranks, true residual < 1e-6."""
    p, _ = mpirun(4, *EXAMPLE, "-m", "47", "-ksp_view", timeout=300)
    assert p.returncode == 0, p.stderr
    assert "reason 2" in p.stdout and _true_residual(p.stdout) < 1e-6, p.stdout
    assert "built from the operator" in p.stdout and "boxes N=[4, 4]" in p.stdout, p.stdout


def test_help_lists_the_preconditioners_options():
    p, _ = mpirun(1, *EXAMPLE, "-m", "15", "-help", timeout=120)
    assert p.returncode == 0, p.stderr
    for option in ("-pddattn_model", "-pddattn_subdomains", "-pddattn_overlap", "-pddattn_coarse", "-pddattn_rank",
                   "-pddattn_train_steps", "-pddattn_levels"):
        assert option in p.stdout, p.stdout[-3000:]


def test_solve_on_a_dmda_with_the_pc_from_the_operator():
    p, _ = mpirun(2, *SOLVE, "--problem", "diffusion2d", "--grid", "31x31", "--coefficient", "lognormal:1", "--dmda",
                  "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains",
                  "2x2", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "met" in p.stdout and _true_residual(p.stdout) < 1e-7, p.stdout


def test_solve_refuses_a_model_of_another_problem(tmp_path):
    out = tmp_path / "m"
    t = subprocess.run([sys.executable, "-m", "pddattn", "train", "--problem", "diffusion2d", "--grid", "15x15",
                        "--coefficient", "lognormal:1", "--subdomains", "3x3", "--rank", "4", "--steps", "2",
                        "--batch", "4", "--test-size", "4", "--out", str(out)], capture_output=True, text=True,
                       env=env(), cwd=ROOT, timeout=300)
    assert t.returncode == 0, t.stderr
    p, _ = mpirun(2, *SOLVE, "--problem", "diffusion2d", "--grid", "15x15", "--coefficient", "jump:1e4",
                  "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_model",
                  str(out / "checkpoint.pt"), timeout=300)
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("pddattn: error:")]
    assert len(errors) == 1 and "is a model of diffusion2d 15x15 lognormal:1" in errors[0], p.stderr


def _petsc_c_toolchain():
    """Why a C PETSc program cannot be built here, or '' when it can."""
    if shutil.which("mpicc") is None or shutil.which("pkg-config") is None:
        return "mpicc or pkg-config missing"
    if subprocess.run(["pkg-config", "--exists", "PETSc"]).returncode != 0:
        return "PETSc's headers are not installed (apt-get install libpetsc-real3.18-dev)"
    return ""


@pytest.mark.skipif(bool(_petsc_c_toolchain()), reason=_petsc_c_toolchain() or "ok")
def test_a_c_program_reaches_ddattention_through_pcpython(tmp_path):
    """PCPYTHON from C: -python EXE starts an embedded interpreter that imports pddattn."""
    exe = tmp_path / "laplace2d"
    b = subprocess.run(["mpicc", "-O2", "-o", str(exe), str(ROOT / "examples/c/laplace2d.c"),
                        *subprocess.run(["pkg-config", "--cflags", "--libs", "PETSc"], capture_output=True,
                                        text=True).stdout.split()], capture_output=True, text=True)
    assert b.returncode == 0, b.stderr
    site = subprocess.run([sys.executable, "-c", "import torch, os; print(os.path.dirname(os.path.dirname("
                                                 "torch.__file__)))"], capture_output=True, text=True).stdout.strip()
    e = env()
    e["PYTHONPATH"] = f"{ROOT}:{site}"
    cmd = [MPIRUN, "--oversubscribe", "-n", "2", str(exe), "-python", sys.executable, "-m", "24", "-ksp_type", "cg",
           "-ksp_norm_type", "unpreconditioned", "-pc_type", "python", "-pc_python_type",
           "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains", "6"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert "reason 2" in p.stdout and _true_residual(p.stdout) < 1e-7, p.stdout


def test_training_on_a_users_pairs_under_mpirun_equals_serial(tmp_path):
    """Each rank reads its own nodes of the pairs (a memory-mapped folder); 20 steps equal serial to 1e-9."""
    n = 47
    h = 1.0 / (n + 1)
    k = np.where((np.arange(n + 1) + 0.5) * h > 0.3, 1e3, 1.0)
    A = (np.diag(k[:-1] + k[1:]) - np.diag(k[1:-1], 1) - np.diag(k[1:-1], -1)) / h ** 2
    f = np.random.default_rng(5).standard_normal((60, n))
    (tmp_path / "pairs").mkdir()
    np.save(tmp_path / "pairs" / "f.npy", f)
    np.save(tmp_path / "pairs" / "u.npy", np.linalg.solve(A, f.T).T)
    args = ["-m", "pddattn", "train", "--data", str(tmp_path / "pairs"), "--subdomains", "6", "--rank", "3",
            "--steps", "20", "--batch", "8", "--eval-every", "10", "--dtype", "float64"]
    p, _ = mpirun(3, *args, "--out", str(tmp_path / "mpi"))
    assert p.returncode == 0, p.stderr
    s = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "serial")], capture_output=True, text=True,
                       env=env(), cwd=ROOT, timeout=120)
    assert s.returncode == 0, s.stderr
    import torch
    from pddattn.checkpoint import global_state, read
    a, b = (global_state(tmp_path / d / "checkpoint.pt") for d in ("mpi", "serial"))
    for name, value in b.items():
        assert torch.allclose(a[name], value, rtol=0, atol=adam_steps(20) * value.abs().max()), name
    assert read(tmp_path / "mpi" / "checkpoint.pt")["progress"]["test_error"] == \
        pytest.approx(read(tmp_path / "serial" / "checkpoint.pt")["progress"]["test_error"], rel=adam_steps(20))


def test_ddattention_solves_a_users_matrix_file_read_by_rows(matrix_file):
    """MatLoad, each rank its rows; the PC from the rows it is handed; the exact solution by MUMPS."""
    p, _ = mpirun(2, "-m", "pddattn", "solve", "--matrix", matrix_file, "-ksp_type", "cg", "-pc_type", "python",
                  "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains", "8", "-ksp_view")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "met" in p.stdout and "never gathered" in p.stdout, p.stdout
    error = float(re.search(r"against the exact solution: ([0-9.e+-]+)", p.stdout).group(1))
    assert error < 1e-6, p.stdout


@pytest.mark.parametrize("shift", ["negative", "indefinite"])
def test_training_under_mpirun_refuses_a_matrix_that_is_not_positive_definite(tmp_path, shift):
    """The serial run's SPD check, on the distributed rows: a negative diagonal, or an indefinite A with a
    positive one (caught by the factorizations of the subdomain and coarse blocks, or MUMPS's inertia)."""
    from pddattn.problems import make_problem
    from pddattn.problems.families import write_petsc_binary
    import scipy.sparse as sp
    A = make_problem("poisson2d", (15, 15)).A.tocsr()
    if shift == "negative":
        A = -A
    else:  # between the two smallest eigenvalues: one negative, a positive diagonal
        lam = np.linalg.eigvalsh(A.toarray())
        A = (A - 0.5 * (lam[0] + lam[1]) * sp.eye(A.shape[0])).tocsr()
    write_petsc_binary(A, tmp_path / "A.petsc")
    for data in ("solve", "probe"):
        p, _ = mpirun(2, "-m", "pddattn", "train", "--matrix", str(tmp_path / "A.petsc"), "--subdomains", "4",
                      "--steps", "5", "--data", data, "--out", str(tmp_path / data))
        errors = [line for line in p.stderr.splitlines() if line.startswith("pddattn: error:")]
        assert p.returncode != 0 and len(errors) == 1 and "not positive definite" in errors[0], p.stderr
        assert "nan" not in p.stdout and "RuntimeWarning" not in p.stderr
