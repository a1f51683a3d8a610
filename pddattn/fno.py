"""The Fourier Neural Operator baseline (Li et al. 2021), from the ``neuraloperator`` package.

An FNO of the grid's dimension (1D: input (B, 1, n); 2D: (B, 1, ny, nx), the
natural order x fastest) wrapped to the operators' interface: ``matvec`` on
node-major (n, B) tensors, so it trains in the same loop, on the same
batches and test set as DD attention and the global model. Its own standard
recipe: inputs and outputs scaled by their RMS over training samples (as
neuralop's normalisers do; the map is linear, so a scalar is enough), the
relative L2 loss, AdamW with weight decay 1e-4, the library's default
architecture (lifting and projection channel ratio 2, 4 Fourier layers,
GELU, positional grid embedding, linear skips) at the given width and
modes. Optional: ``pip install 'pddattn[fno]'`` (neuraloperator pinned so
torch and numpy < 2 stay as they are).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .attention import Attention

__all__ = ["FNO_EXTRA", "fno_missing", "FNOOperator", "data_scales"]

FNO_EXTRA = "neuraloperator==2.0.0"
WEIGHT_DECAY = 1e-4


def fno_missing():
    """Why the FNO baseline cannot run here ('' when it can)."""
    try:
        import neuralop  # noqa: F401
    except ImportError as exc:
        return (f"--baseline fno needs the optional extra [fno] ({FNO_EXTRA}): pip install -e '.[fno]' "
                f"(make setup installs it); import failed: {exc}")
    return ""


def data_scales(sampler, count=256):
    """(RMS of f, RMS of u) over ``count`` training samples (stream 2: apart from every batch)."""
    f, u = sampler.evaluate(sampler.coefficients(count, 2, 0))
    return float(np.sqrt(np.mean(f ** 2))), float(np.sqrt(np.mean(u ** 2)))


@contextlib.contextmanager
def default_dtype(dtype):
    """Tensors made without a dtype inside the block (by a third-party model) take ``dtype``."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _shape(grid):
    """The FNO's spatial shape of a grid (n,) or (nx, ny): (n,) or (ny, nx)."""
    return tuple(grid) if len(grid) == 1 else (grid[1], grid[0])


class FNOOperator(Attention):
    """An FNO as an operator on node-major columns: u ~ FNO(f).

    Parameters
    ----------
    grid : tuple of int
    width : int
        Hidden channels.
    modes : int
        Fourier modes kept per axis (at most each axis's size; the last axis's
        at most size // 2 + 1, the real FFT's).
    layers : int
    scales : (float, float)
        RMS of f and of u on training samples.
    """

    recipe = "fno"

    def __init__(self, grid, width=32, modes=16, layers=4, scales=(1.0, 1.0), seed=0, dtype=None, device=None,
                 problem=None):
        super().__init__()
        from neuralop.models import FNO
        self.grid, self.width, self.modes, self.layers = tuple(grid), int(width), int(modes), int(layers)
        self.n, self.problem, self.scales = int(np.prod(grid)), problem, tuple(float(s) for s in scales)
        shape = _shape(self.grid)
        n_modes = tuple(min(self.modes, s) for s in shape[:-1]) + (min(self.modes, shape[-1] // 2 + 1),)
        default = torch.get_default_dtype()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # Built in the wanted dtype: Module.to(float) would drop the spectral weights' imaginary parts.
            torch.set_default_dtype(dtype or default)
            try:
                self.net = FNO(n_modes=n_modes, in_channels=1, out_channels=1, hidden_channels=self.width,
                               n_layers=self.layers)
            finally:
                torch.set_default_dtype(default)
        complex_dtype = {torch.float64: torch.complex128, torch.float32: torch.complex64}[dtype or default]
        with torch.no_grad():  # neuralop makes its spectral weights complex64 whatever the default dtype
            for p in self.net.parameters():
                if p.is_complex():
                    p.data = p.data.to(complex_dtype)
        self.net.to(device=device)

    def natural_scales(self):
        """Learning rates are absolute for the FNO (its inputs and outputs are normalised)."""
        return {name: 1.0 for name, _ in self.named_parameters()}

    def matvec(self, x, transpose=False):
        """FNO(f) on the columns of x, shape (n, B)."""
        if transpose:
            raise ValueError("the FNO is a nonlinear operator: it has no transpose")
        s_f, s_u = self.scales
        B = x.shape[1]
        with default_dtype(self.compute_dtype):  # tensors the FNO makes in forward (its grid) match its weights
            out = self.net((x.T / s_f).reshape(B, 1, *_shape(self.grid)))
        return out.reshape(B, self.n).T * s_u

    def num_parameters(self):
        """Real parameters (a complex weight counts twice)."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters())

    def config(self):
        return {**self.architecture(self.problem, self.grid, self.width, self.modes, self.layers),
                "scales": list(self.scales)}

    @staticmethod
    def architecture(problem, grid, width, modes, layers):
        """The architecture dict checkpoints store (the data scales added once known), written here only."""
        return {"model": "fno", "n": int(np.prod(grid)), "problem": None if problem is None else problem.spec(),
                "grid": list(grid), "width": width, "modes": modes, "layers": layers}
