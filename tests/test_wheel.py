"""The package as a cluster installs it: a wheel built from the repository, in a fresh venv, runs the PC."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, pkgutil, sys, pddattn
assert pddattn.__file__.startswith(sys.prefix), pddattn.__file__  # the wheel's copy, not the repository's
names = [m.name for m in pkgutil.walk_packages(pddattn.__path__, "pddattn.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print("imported", len(names), "modules:", " ".join(sorted(n for n in names if n.count(".") == 1)))
"""


def _dependency_paths():
    """This venv's site-packages and what its .pth files add (Debian's petsc4py), for the fresh venv's deps."""
    site = Path(sysconfig.get_paths()["purelib"])
    paths = [str(site)]
    for pth in site.glob("*.pth"):
        paths += [line.strip() for line in pth.read_text().splitlines()
                  if line.strip() and not line.startswith(("import", "#")) and Path(line.strip()).is_dir()]
    return paths


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a clean copy: a build/ folder left in the checkout would hide missing packages
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs",
                                                                "__pycache__", "results"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(work / "dist"), str(source)], check=True, timeout=300, cwd=work)
    wheel = next((work / "dist").glob("pddattn-*.whl"))
    venv = work / "venv"
    subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable, "-m", "venv",
                    "--without-pip", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # Dependencies (torch, scipy, mpi4py, petsc4py) come from this environment, after the wheel's own files.
    Path(purelib, "zz-pddattn-test-deps.pth").write_text("\n".join(_dependency_paths()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, timeout=300)
    return python, work


def _run(python, cwd, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_the_wheel_holds_and_imports_every_subpackage(wheel_venv):
    python, work = wheel_venv
    p = _run(python, work, "-c", IMPORT_ALL)
    assert p.returncode == 0, p.stderr
    for package in ("pddattn.parallel", "pddattn.petsc", "pddattn.problems"):
        assert package in p.stdout, p.stdout


def test_the_wheel_runs_the_pc_on_a_small_matrix(wheel_venv):
    pytest.importorskip("petsc4py")
    python, work = wheel_venv
    program = work / "user_program.py"
    shutil.copy(ROOT / "tests" / "user_program.py", program)
    p = _run(python, work, str(program), "-ksp_type", "cg", "-pc_type", "python", "-pc_python_type",
             "pddattn.petsc.DDAttentionPC", "-pddattn_subdomains", "4", "-ksp_view")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "reason 2" in p.stdout and "DD attention preconditioner" in p.stdout
