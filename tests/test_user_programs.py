"""Users' own petsc4py programs under a real mpirun: clean exits, -log_view, one line on a bad option."""
import subprocess
import sys

import pytest

from test_mpirun import MPIRUN, ROOT, env

pytest.importorskip("petsc4py")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed")
DD = ["-ksp_type", "cg", "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC"]


def run_program(n, *options):
    cmd = [MPIRUN, "--oversubscribe", "-n", str(n), sys.executable, "tests/user_program.py", *options]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120, cwd=ROOT)


@pytest.mark.parametrize("n", [1, 2])
def test_a_program_that_never_destroys_its_ksp_exits_cleanly_and_logs(n):
    p = run_program(n, *DD, "-pddattn_subdomains", "4", "-log_view")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "reason 2" in p.stdout
    assert "PETSc Performance Summary" in p.stdout  # printed by PetscFinalize, after teardown
    assert "SEGV" not in p.stdout + p.stderr


def test_a_composite_with_a_python_sub_pc_exits_cleanly():
    p = run_program(2, "-ksp_type", "gmres", "-pc_type", "composite", "-pc_composite_pcs", "python,sor",
                    "-sub_0_pc_python_type", "pddattn.petsc.DDAttentionPC", "-sub_0_pddattn_subdomains", "4")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "SEGV" not in p.stdout + p.stderr


def test_an_error_in_setup_ends_the_program_with_its_one_line():
    p = run_program(2, *DD, "-pddattn_subdomains", "0")
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if "pddattn" in line]  # the rest is mpirun's banner
    assert errors == ["pddattn: error: -pddattn_subdomains must be positive (32 or 4x4), got '0'"], p.stderr
    assert "Traceback" not in p.stderr and "SEGV" not in p.stdout + p.stderr


@pytest.mark.parametrize("options,message", [
    (["-pddattn_overlap", "-1"], "pddattn: error: -pddattn_overlap must be >= 0, got -1"),
    (["-pddattn_rank", "-1"], "pddattn: error: -pddattn_rank must be >= 0, got -1"),
    (["-pddattn_train_steps", "-5"], "pddattn: error: -pddattn_train_steps must be >= 0, got -5"),
    (["-pddattn_levels", "1"], "pddattn: error: -pddattn_levels must be >= 2, got 1"),
])
def test_every_bad_pc_option_is_one_line_in_a_users_program(options, message):
    p = run_program(2, *DD, *options)
    errors = [line for line in p.stderr.splitlines() if "pddattn" in line]
    assert p.returncode != 0 and errors == [message], p.stderr
    assert "Traceback" not in p.stderr and "SEGV" not in p.stdout + p.stderr


def test_the_pc_names_its_own_options_in_layout_errors():
    p = run_program(3, *DD, "-pddattn_subdomains", "2")  # 2 blocks on 3 ranks
    errors = [line for line in p.stderr.splitlines() if "pddattn" in line]
    assert p.returncode != 0 and len(errors) == 1 and "-pddattn_subdomains" in errors[0], p.stderr
    assert "--subdomains" not in errors[0] and "--data-parallel" not in errors[0]


@pytest.mark.parametrize("n", [1, 2])
def test_an_unknown_python_pc_class_is_one_line_and_no_segv(n):
    p = run_program(n, "-ksp_type", "cg", "-pc_type", "python", "-pc_python_type", "pddattn.petsc.NoSuchPC")
    errors = [line for line in p.stderr.splitlines() if "pddattn" in line]
    assert p.returncode != 0 and errors == ["pddattn: error: -pc_python_type pddattn.petsc.NoSuchPC: there is no "
                                            "such preconditioner; pddattn's is pddattn.petsc.DDAttentionPC"], p.stderr
    assert "SEGV" not in p.stdout + p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("options,message", [
    (["-ksp_type", "nonsense"], "pddattn: error: PETSc: Unable to find requested KSP type nonsense"),
    (["-ksp_type", "cg", "-pc_type", "python", "-pc_python_type", "pddattn.petsc.NoSuchPC"],
     "pddattn: error: -pc_python_type pddattn.petsc.NoSuchPC: there is no such preconditioner"),
    (["-ksp_type", "cg", "-pc_type", "python", "-pc_python_type", "pddattn.petsc.DDAttentionPC", "-pddattn_rank",
      "-1"], "pddattn: error: -pddattn_rank must be >= 0, got -1"),
])
def test_pddattn_solve_ends_a_petsc_error_with_one_line(options, message):
    cmd = [MPIRUN, "--oversubscribe", "-n", "2", sys.executable, "-m", "pddattn", "solve", "--n", "63", *options]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120, cwd=ROOT)
    errors = [line for line in p.stderr.splitlines() if "pddattn" in line]
    assert p.returncode != 0 and len(errors) == 1 and errors[0].startswith(message), p.stderr
    assert "SEGV" not in p.stdout + p.stderr and "Traceback" not in p.stderr


def test_pddattn_solve_passes_negative_petsc_values_and_names_a_divergence():
    cmd = [sys.executable, "-m", "pddattn", "solve", "--n", "255", "-ksp_type", "cg", "-pc_type", "gamg",
           "-pc_gamg_threshold", "-1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120, cwd=ROOT)
    assert p.returncode == 0 and "KSP converged reason" in p.stdout, p.stderr
    cmd = [sys.executable, "-m", "pddattn", "solve", "--n", "1023", "-ksp_type", "cg", "-pc_type", "jacobi",
           "-ksp_max_it", "3"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "KSP diverged reason -3 (DIVERGED_MAX_IT): 3 iterations" in p.stdout, p.stdout
