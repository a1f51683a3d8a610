"""Every Python snippet in the README and docs/ runs as shown (the checkpoint it loads made small first)."""
import re
from pathlib import Path

import pytest

from pddattn.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = [(path.name, i, code) for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
            for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))]


def test_the_docs_have_snippets():
    assert any(name == "README.md" for name, _, _ in SNIPPETS)


@pytest.mark.parametrize("name,index,code", SNIPPETS, ids=[f"{n}-{i}" for n, i, _ in SNIPPETS])
def test_a_snippet_runs_as_shown(tmp_path, monkeypatch, name, index, code):
    import torch
    torch.set_default_dtype(torch.float32)  # a user's session, not the suite's float64
    for folder in re.findall(r'pddattn\.load\("([^"]+)/checkpoint\.pt"\)', code):  # a small run of that kind
        cfg = TrainConfig.of(problem="diffusion2d", grid="15x15", coefficient="lognormal:1", subdomains="3x3",
                          coarse_space="harmonic", steps=2, batch=4, test_size=4, eval_every=1)
        train(cfg, out=tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{name} snippet {index}", "exec"), {})
