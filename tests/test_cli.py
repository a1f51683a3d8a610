"""The command line as users run it: real subprocesses, real files."""
import json
import os
import subprocess
import sys

import pytest

from tolerances import APPLY

TINY = ["--n", "63", "--subdomains", "4", "--overlap", "2", "--rank", "4", "--steps", "30", "--batch", "8",
        "--eval-every", "10", "--test-size", "16", "--lr", "0.03", "--warmup", "5"]


def run(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMI", "PMIX"))}
    return subprocess.run([sys.executable, "-m", "pddattn", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["train", "--model", "mlp"], "invalid choice: 'mlp'"),
    (["train", "--rank", "0"], "--rank must be a positive integer"),
    (["train", "--rank", "-3"], "--rank must be a positive integer"),
    (["train", "--overlap", "5000"], "too large"),
    (["train", "--subdomains", "2000"], "more than the n=1023 nodes"),
    (["train", "--n", "abc"], "invalid int value: 'abc'"),
    (["train", "--resume"], "--resume needs --out"),
    (["train", "--data-parallel", "2"], "does not divide the 1 ranks"),
    (["compare", "--global-rank", "0"], "--rank must be a positive integer"),
    (["frobnicate"], "invalid choice"),
    (["train", "-ksp_type", "cg"], "unrecognized arguments: -ksp_type cg"),
    (["train", "--problem", "heat3d"], "invalid choice: 'heat3d'"),
    (["train", "--problem", "poisson2d", "--grid", "31x31", "--subdomains", "5"], "boxes need Nx x Ny"),
    (["train", "--problem", "poisson2d", "--grid", "31x31", "--subdomains", "40x2"], "do not fit the 31x31 grid"),
    (["train", "--problem", "poisson2d", "--grid", "31"], "needs a nx x ny grid"),
    (["train", "--problem", "diffusion2d", "--grid", "15x15", "--subdomains", "2x2", "--coefficient", "jump:-1"],
     "contrast must be a positive number"),
    (["train", "--problem", "diffusion2d", "--grid", "15x15", "--subdomains", "2x2", "--coefficient", "jump:10",
      "--data", "fourier"], "needs constant coefficients"),
    (["train", "--problem", "poisson2d", "--grid", "15x15", "--subdomains", "2x2", "--coarse", "hat"],
     "hat coarse space needs an intervals decomposition"),
    (["train", "--matrix", "/nonexistent/A.npz"], "no matrix file at /nonexistent/A.npz"),
    (["train", "--n", "1000000000"], "this run needs about"),
    (["train", "--beta2", "1.5"], "--beta2 must be in (0, 1)"),
    (["train", "--device", "cuda:99"], "--device cuda:99: "),  # a CPU build, or fewer devices: one line
    (["bench", "--device", "cuda:99"], "--device cuda:99: "),
    (["compare", "--steps", "0"], "--steps (and --global-steps) must be >= 1"),
])
def test_bad_arguments_end_with_one_line_and_nonzero_exit(args, message):
    p = run(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pddattn: error:") and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_train_then_resume_then_wrong_n(tmp_path):
    out = tmp_path / "run"
    p = run("train", *TINY, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "test error" in p.stdout and (out / "checkpoint.pt").is_file()
    p = run("train", "--resume", "--out", str(out), "--steps", "50")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 50
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) == [0, 10, 20, 30, 40, 50]  # the resume point is logged once
    p = run("train", "--resume", "--out", str(out), "--n", "127")
    assert p.returncode == 2 and "has --n 63, not 127" in p.stderr and "Traceback" not in p.stderr


def test_resume_from_a_corrupt_checkpoint_is_one_line(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    p = run("train", "--resume", "--out", str(tmp_path))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "cannot read checkpoint" in p.stderr


def test_compare_prints_the_table_and_writes_results(tmp_path):
    p = run("compare", *TINY, "--global-rank", "8", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "| model | parameters | test error |" in p.stdout
    assert "| global |" in p.stdout and "| dd |" in p.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["models"]) == {"global", "dd"}
    assert results["models"]["global"]["parameters"] == 2 * 63 * 8
    for m in results["models"].values():
        assert m["steps"] == 30 and 0 < m["test_error"] < 10
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_bench_runs(tmp_path):
    p = run("bench", "--n", "255", "--subdomains", "8", "--repeats", "2", "--json", str(tmp_path / "b.json"))
    assert p.returncode == 0, p.stderr
    assert "DD / global step time" in p.stdout
    assert json.loads((tmp_path / "b.json").read_text())["ratio_dd_over_global"] > 0


TINY2D = ["--problem", "diffusion2d", "--grid", "15x13", "--coefficient", "lognormal:1", "--subdomains", "3x2",
          "--overlap", "1", "--rank", "4", "--steps", "20", "--batch", "8", "--eval-every", "10", "--test-size", "8"]


def test_2d_variable_coefficient_train_resume_and_load(tmp_path):
    out = tmp_path / "run2d"
    p = run("train", *TINY2D, "--coarse", "harmonic", "--out", str(out))
    assert p.returncode == 0, p.stderr
    p = run("train", "--resume", "--out", str(out), "--steps", "30")
    assert p.returncode == 0, p.stderr
    import torch
    import pddattn
    from pddattn.problems import make_problem
    model = pddattn.load(out / "checkpoint.pt")
    assert model.problem == make_problem("diffusion2d", (15, 13), "lognormal:1")
    assert model.decomposition.spec == {"kind": "boxes", "N": [3, 2], "delta": 1, "pou": "count", "coarse": "harmonic"}
    x = torch.randn(7, 195, dtype=torch.float64)
    # One application against the dense matrix: sums of at most n terms reordered (tolerances.py).
    scale = model.dense().abs().max() * x.abs().max() * model.n
    assert torch.allclose(model(x), x @ model.dense().T, rtol=0, atol=APPLY * scale)
    p = run("train", "--resume", "--out", str(out), "--coefficient", "lognormal:2")
    assert p.returncode == 2 and "has --coefficient 'lognormal:1'" in p.stderr


def test_a_users_matrix_trains_algebraically_and_a_changed_file_is_refused(tmp_path):
    import scipy.sparse as sp
    from pddattn.problems import make_problem
    A = make_problem("diffusion2d", (12, 12), "jump:100").A
    sp.save_npz(tmp_path / "A.npz", A)
    out = tmp_path / "mine"
    p = run("train", "--matrix", str(tmp_path / "A.npz"), "--subdomains", "4", "--overlap", "1", "--rank", "4",
            "--steps", "10", "--batch", "8", "--eval-every", "5", "--test-size", "8", "--out", str(out))
    assert p.returncode == 0, p.stderr
    sp.save_npz(tmp_path / "A.npz", A * 2)
    import pddattn
    from pddattn.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="has changed since the model was trained"):
        pddattn.load(out / "checkpoint.pt")


def test_compare_in_2d_reports_capacity_and_schwarz_start(tmp_path):
    p = run("compare", *TINY2D, "--global-rank", "8", "--out", str(tmp_path / "cmp"))
    assert p.returncode == 0, p.stderr
    assert "capacity (truncated A^-1, best rank-r)" in p.stdout and "Schwarz start" in p.stdout
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    ratio = results["ratios"]["capacity_over_dd"]  # the sentence's direction follows the measured ratio
    assert f"{'lower' if ratio >= 1 else 'higher'} than the global model's capacity" in p.stdout, p.stdout
    g = results["models"]["global"]
    assert 0 < g["capacity"] <= g["test_error"] * 1.05  # nothing trained beats its capacity by more than noise


def test_train_without_out_writes_a_new_folder_and_a_finished_run_is_never_overwritten(tmp_path):
    p = run("train", *TINY, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    folder = p.stdout.strip().splitlines()[-1].split()[1].rsplit("/", 1)[0]  # "wrote FOLDER/checkpoint.pt and ..."
    assert folder.startswith("runs/dd-") and (tmp_path / folder / "checkpoint.pt").is_file()
    before = (tmp_path / folder / "checkpoint.pt").read_bytes()
    p = run("train", *TINY, "--out", folder, cwd=tmp_path)
    assert p.returncode == 2 and "holds a run (checkpoint at step 30)" in p.stderr and "--overwrite" in p.stderr
    assert (tmp_path / folder / "checkpoint.pt").read_bytes() == before
    p = run("train", "--resume", "--out", folder, cwd=tmp_path)  # finished: it says so, writes nothing
    assert p.returncode == 2 and "is finished (step 30 of --steps 30)" in p.stderr, p.stderr
    assert (tmp_path / folder / "checkpoint.pt").read_bytes() == before
    p = run("train", *TINY, "--out", folder, "--overwrite", "--seed", "1", cwd=tmp_path)
    assert p.returncode == 0 and (tmp_path / folder / "checkpoint.pt").read_bytes() != before


def test_a_run_on_a_relative_data_path_resumes_from_another_folder(tmp_path):
    import numpy as np
    (tmp_path / "work").mkdir()
    rng = np.random.default_rng(0)
    u = rng.standard_normal((40, 16))
    np.savez(tmp_path / "work" / "pairs.npz", f=u * 3, u=u)
    short = ["--subdomains", "2", "--rank", "2", "--batch", "8", "--eval-every", "10", "--warmup", "2"]
    assert run("train", "--data", "pairs.npz", *short, "--steps", "10", "--out", "r", cwd=tmp_path / "work").returncode == 0
    p = run("train", "--resume", "--out", "work/r", "--steps", "20", cwd=tmp_path)  # no --data: the stored path
    assert p.returncode == 0, p.stderr
    p = run("train", "--resume", "--out", "work/r", "--steps", "30", "--data", str(tmp_path / "work" / "pairs.npz"),
            cwd=tmp_path)  # the same file by its absolute path
    assert p.returncode == 0, p.stderr


def test_petsc_options_keep_their_negative_values():
    from pddattn.cli import _split_petsc_options
    ours, petsc = _split_petsc_options(["--n", "-3", "-pc_gamg_threshold", "-1", "-pddattn_overlap", "-1",
                                        "-ksp_rtol", "1e-8", "-ksp_view", "--grid", "7"])
    assert ours == ["--n", "-3", "--grid", "7"]
    assert petsc == ["-pc_gamg_threshold", "-1", "-pddattn_overlap", "-1", "-ksp_rtol", "1e-8", "-ksp_view"]


def test_2d_problems_and_pairs_train_on_the_default_subdomains(tmp_path):
    p = run("train", "--problem", "poisson2d", "--grid", "15x15", "--steps", "2", "--test-size", "4", "--batch", "4",
            "--out", "p", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(json.dumps(__import__("pddattn").checkpoint.read(tmp_path / "p" / "checkpoint.pt")
                                 ["architecture"]["decomposition"]["N"])) == [4, 4]
