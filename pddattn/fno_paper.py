"""The FNO paper's own 2D network and normalisers (Li et al. 2021), written here.

The Darcy figure the field quotes (0.0108 at 85 x 85) comes from the
paper's first script (``fourier_2d.py``, 2020), whose model differs from
neuraloperator 2.0's FNO in ways that may matter for this benchmark:

- a and u normalised *pointwise* by their mean and standard deviation
  over the training fields (its ``UnitGaussianNormalizer``, eps 1e-5), so
  the boundary's u = 0 and the mean field are built into the output;
- the input (a, x, y) lifted by one linear map to ``width`` channels;
- four layers of a spectral convolution (``modes`` x ``modes`` in the two
  low-frequency corners of the real FFT, orthonormal, weights drawn
  uniform in [0, 1 / width^2) for both parts) plus a 1 x 1 convolution,
  each followed by batch normalisation and, except the last, ReLU;
- a projection by Linear(width, 128), ReLU, Linear(128, 1);
- no domain padding.

``PaperFNO2D`` is that model; ``fit`` sets its normalisers from the
training fields (pddattn/normalisers.py puts them around any network).
On another grid (resolution transfer, which the paper's Darcy script does
not do) the normalisers are interpolated bilinearly: the network itself is
grid-independent. The loss the script sums over a batch is the trainer's
business (benchmarks/darcy.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .normalisers import PointwiseNormalised

__all__ = ["PaperSpectralConv2d", "PaperFNO2D", "sized"]

class PaperSpectralConv2d(nn.Module):
    """(B, c, s1, s2) -> (B, c, s1, s2): the lowest ``modes`` frequencies of both signs on axis 1 and the
    lowest ``modes`` of the real FFT on axis 2, each multiplied by its own c x c complex matrix.

    The paper computes it by an orthonormal rfft2 and irfft2. Only 2 m x m coefficients are kept, so here
    they are computed as truncated DFTs, two small matrix products each way: the same numbers to rounding,
    and 3.6x faster forward, 2.5x with the backward pass, on a batch of 20 x 32 channels at 85 x 85 (an FFT
    length of 5 x 17; 1 thread, measured beside another job).
    """

    def __init__(self, width, modes):
        super().__init__()
        self.modes = modes
        scale = 1.0 / (width * width)
        shape = (2, width, width, modes, modes)  # [positive rows, negative rows]
        self.weights = nn.Parameter(scale * torch.complex(torch.rand(shape), torch.rand(shape)))
        self._bases = {}

    def bases(self, s1, s2, dtype, device):
        """The truncated DFT's matrices on an s1 x s2 grid: (F1, F2 real and imaginary, G1, G2 real and
        imaginary), forward rows (2m, s1) and columns (s2, m), inverse (s1, 2m) and (m, s2)."""
        key = (s1, s2, dtype, device)
        if key not in self._bases:
            m = self.modes
            if 2 * m > s1 or m > s2 // 2 + 1:
                raise ValueError(f"{m} modes do not fit a {s1} x {s2} grid")
            rows = torch.cat([torch.arange(m), torch.arange(s1 - m, s1)]).double()
            cols = torch.arange(m).double()
            f1 = torch.exp(-2j * math.pi * torch.outer(rows, torch.arange(s1).double()) / s1) / math.sqrt(s1)
            f2 = torch.exp(-2j * math.pi * torch.outer(torch.arange(s2).double(), cols) / s2) / math.sqrt(s2)
            # the inverse real FFT counts each column but the zeroth (and an even grid's last) twice: the
            # conjugate half of the spectrum it does not store
            twice = torch.where((cols == 0) | (2 * cols == s2), 1.0, 2.0).double()
            g2 = f2.conj().T * twice[:, None]
            cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            self._bases[key] = (f1.to(device, cdtype), f2.real.to(device, dtype), f2.imag.to(device, dtype),
                                f1.conj().T.to(device, cdtype), g2.real.to(device, dtype), g2.imag.to(device, dtype))
        return self._bases[key]

    def forward(self, x):
        f1, f2r, f2i, g1, g2r, g2i = self.bases(x.shape[-2], x.shape[-1], x.dtype, x.device)
        coefficients = f1 @ torch.complex(x @ f2r, x @ f2i)  # (B, c, 2m, m)
        weights = torch.cat([self.weights[0], self.weights[1]], dim=2).to(coefficients.dtype)
        mixed = torch.einsum("bixy,ioxy->boxy", coefficients, weights)
        back = g1 @ mixed  # (B, c, s1, m)
        return back.real @ g2r - back.imag @ g2i


class PaperFNO2D(PointwiseNormalised):
    """a (B, s, s) -> u (B, s, s), the FNO paper's Darcy model with its pointwise normalisers.

    Parameters
    ----------
    side : int
        The training grid's points per axis (boundary included): the normalisers' shape.
    width, modes, layers : int
        The paper's Darcy run: 32, 12, 4.
    """

    def __init__(self, side, width=32, modes=12, layers=4, seed=0):
        super().__init__(side)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lift = nn.Linear(3, width)
            self.spectral = nn.ModuleList(PaperSpectralConv2d(width, modes) for _ in range(layers))
            self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
            self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(layers))
            self.project = nn.Sequential(nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, 1))

    def network(self, x):
        """Normalised a (B, s, s) -> normalised u: (a, x, y) lifted, the Fourier layers, projected."""
        line = torch.linspace(0, 1, x.shape[-1], dtype=x.dtype, device=x.device)
        gx, gy = torch.meshgrid(line, line, indexing="ij")
        x = torch.stack((x, gx.expand_as(x), gy.expand_as(x)), dim=-1)
        x = self.lift(x).permute(0, 3, 1, 2)
        for i, (spectral, pointwise, norm) in enumerate(zip(self.spectral, self.pointwise, self.norms)):
            x = norm(spectral(x) + pointwise(x))
            if i < len(self.spectral) - 1:
                x = F.relu(x)
        return self.project(x.permute(0, 2, 3, 1))[..., 0]


def sized(target, side, layers=4, modes=(12, 8, 6, 4)):
    """(width, modes) of the ``layers``-layer paper FNO whose parameter count is nearest ``target``, the modes
    one of ``modes`` (an int: that one; the larger first among equals)."""
    best = None
    for m in (modes,) if isinstance(modes, int) else modes:
        if 2 * m > side:
            continue
        for width in range(2, 65):
            count = PaperFNO2D(side, width, m, layers).num_parameters()
            if best is None or abs(count - target) < abs(best[0] - target):
                best = (count, width, m)
    if best is None:
        raise ValueError(f"no modes of {modes} fit a {side} x {side} grid")
    return best[1], best[2]
