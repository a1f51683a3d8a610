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
