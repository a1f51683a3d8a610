"""The Darcy benchmark's training state on disk: each model resumes where it stopped (used by darcy.py).

The full run trains every model for hours on a small machine, over more than one sitting. After every
epoch a model's weights, optimizer, schedule, shuffling generator and curve are written to
``STATE/NAME.pt`` (to a temporary file first, then renamed, so that a run killed mid-write loses at most
the epoch in progress); a finished model's results go to ``STATE/NAME.json``. A state made for another
configuration (data, split sizes, epochs, batch, optimizer) is refused, not mixed in.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = ["TrainingState"]


class TrainingState:
    """Saved epochs and finished results of the models of one configuration ``config`` (a dict)."""

    def __init__(self, folder, config):
        self.folder, self.config = Path(folder), dict(config)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _check(self, saved, path):
        if saved != self.config:
            changed = sorted(k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k))
            raise SystemExit(f"{path} was made for another configuration ({', '.join(changed)}: "
                             f"{[saved.get(k) for k in changed]} there, {[self.config.get(k) for k in changed]} "
                             "now); give another --state folder or remove it")

    def load(self, name):
        """The saved training state of model ``name`` (a dict), or None where there is none."""
        path = self.folder / f"{name}.pt"
        if not path.exists():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=False)
        self._check(saved["config"], path)
        return saved

    def save(self, name, **state):
        path = self.folder / f"{name}.pt"
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"config": self.config, **state}, tmp)
        os.replace(tmp, path)

    def finished(self):
        """{name: results} of every model this configuration has finished, in the order they finished."""
        done = []
        for path in self.folder.glob("*.json"):
            result = json.loads(path.read_text())
            self._check(result["config"], path)
            done.append((path.stat().st_mtime, path.stem, result["results"]))
        return {name: results for _, name, results in sorted(done)}

    def in_progress(self):
        """{name: {"parameters", "curve"}} of every model with saved epochs and no results yet."""
        out = {}
        for path in sorted(self.folder.glob("*.pt")):
            if path.stem.endswith("-checkpoint") or (self.folder / f"{path.stem}.json").exists():
                continue
            saved = self.load(path.stem)
            count = saved.get("parameters")
            if count is None:  # saved before the count was: counted from the state (buffers too)
                count = sum(v.numel() * (2 if v.is_complex() else 1) for v in saved["model"].values()
                            if torch.is_tensor(v))
            out[path.stem] = {"parameters": count, "curve": saved["curve"]}
        return out

    def finish(self, name, results):
        path = self.folder / f"{name}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"config": self.config, "results": results}, indent=1))
        os.replace(tmp, path)
