import os
import pickle

import pytest
import torch

from pddattn import checkpoint
from pddattn.checkpoint import CheckpointError
from pddattn.train import TrainConfig, train


@pytest.fixture
def trained(tmp_path):
    cfg = TrainConfig(n=40, subdomains=4, overlap=2, rank=3, batch=8, steps=20, eval_every=10, test_size=8,
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
