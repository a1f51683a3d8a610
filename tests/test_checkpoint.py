import os
import pickle

import pytest
import torch

from pddattn import checkpoint
from pddattn.checkpoint import CheckpointError
from pddattn.train import TrainConfig, train


@pytest.fixture
def trained(tmp_path):
    cfg = TrainConfig.of(n=40, subdomains=4, overlap=2, rank=3, batch=8, steps=20, eval_every=10, test_size=8,
                      dtype="float64")
    model, _ = train(cfg, out=tmp_path)
    return model, tmp_path / "checkpoint.pt"


def test_load_model_gives_the_same_operator(trained):
    model, path = trained
    loaded, payload = checkpoint.load_model(path)
    assert payload["architecture"] == model.config()
    assert torch.equal(loaded.dense(), model.dense())


def test_a_crash_mid_write_keeps_the_previous_checkpoint(trained, monkeypatch):
    model, path = trained
    before = path.read_bytes()

    def crash(obj, fh):
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        checkpoint.atomic_save({"x": 1}, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    checkpoint.read(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_loading_never_executes_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"format": checkpoint.FORMAT, "payload": _Exploit()}, fh)
    torch.save({"format": checkpoint.FORMAT, "x": _Exploit()}, tmp_path / "evil2.pt")
    for path in (bad, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError, match="cannot read checkpoint"):
            checkpoint.read(path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


@pytest.mark.parametrize("content,match", [
    (None, "no checkpoint file"), (b"not a zip", "cannot read checkpoint"),
    ({"hello": 1}, "is not a pddattn checkpoint"), ({"format": checkpoint.FORMAT, "version": 99}, "version 99"),
])
def test_unusable_files_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.read(path)


def _cli(*args, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "pddattn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def _last_test_error(folder):
    import json
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()][-1]["test_error"]


def test_a_pairs_trained_model_loads_and_applies_with_its_data_gone(tmp_path):
    """As users do: train on pairs (no matrix), delete the pairs file, load, apply to the held-out f."""
    import numpy as np
    import pddattn
    from pddattn.problems import make_problem
    A = make_problem("diffusion2d", (15, 15), "lognormal:1").A
    rng = np.random.default_rng(3)
    u = rng.standard_normal((120, 225))
    f = (A @ u.T).T
    np.savez(tmp_path / "pairs.npz", f=f[:100], u=u[:100], f_test=f[100:], u_test=u[100:])
    p = _cli("train", "--data", "pairs.npz", "--grid", "15x15", "--subdomains", "3x3", "--rank", "6", "--steps",
             "40", "--eval-every", "20", "--dtype", "float64", "--out", "m", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    reported = _last_test_error(tmp_path / "m")
    (tmp_path / "pairs.npz").unlink()
    model = pddattn.load(tmp_path / "m" / "checkpoint.pt")
    y = model(torch.from_numpy(f[100:]))
    error = (np.linalg.norm(y.detach().numpy() - u[100:], axis=1) / np.linalg.norm(u[100:], axis=1)).mean()
    # The same float64 operator on the same f: only the order of the sums differs. Each output entry sums
    # O(L r) products of O(1)-conditioned factors: a relative change of at most ~1e3 eps (a stated factor).
    assert abs(error - reported) <= 1e3 * np.finfo(np.float64).eps * reported
    assert model(torch.from_numpy(f[100:]).float()).dtype == torch.float32  # a user's float32 tensor works


@pytest.mark.parametrize("kind", ["matrix", "fno", "multilevel", "family"])
def test_every_kind_of_checkpoint_loads_without_its_files_and_applies_to_float32(tmp_path, kind):
    """Family, matrix file (gone after training), FNO and multilevel: pddattn.load, then a float32 tensor in."""
    import numpy as np
    import scipy.sparse as sp
    import pddattn
    from pddattn.problems import make_problem
    args = {"matrix": ["--matrix", "A.npz", "--subdomains", "4"],
            "fno": ["--model", "fno", "--problem", "poisson2d", "--grid", "15x15", "--fno-width", "4",
                    "--fno-modes", "3", "--fno-layers", "2"],
            "multilevel": ["--n", "255", "--subdomains", "16", "--levels", "3", "--top-size", "4"],
            "family": ["--problem", "diffusion2d", "--grid", "15x15", "--coefficient", "jump:1e2"]}[kind]
    sp.save_npz(tmp_path / "A.npz", make_problem("diffusion2d", (15, 15), "jump:1e2").A.tocsr())
    p = _cli("train", *args, "--steps", "10", "--eval-every", "10", "--batch", "8", "--test-size", "8", "--out", "m",
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    before = pddattn.load(tmp_path / "m" / "checkpoint.pt")
    (tmp_path / "A.npz").unlink()
    after = pddattn.load(tmp_path / "m" / "checkpoint.pt")
    x = torch.randn(3, after.n, dtype=torch.float32)
    y = after(x)
    assert y.dtype == torch.float32 and y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(after(x.double()), before(x.double()))  # the same operator, file or no file
    assert np.isfinite(_last_test_error(tmp_path / "m"))
