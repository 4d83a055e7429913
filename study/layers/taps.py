"""Filter taps as modules: fixed (a buffer) or learnable (parameters under a constraint).

Every taps module is called with no input and returns the current 1-D taps, shape
``(K,)``, summing to 1. Blur layers hold one as ``self.lowpass``, so the filter's
trainable parameters are easy to find by name (``"lowpass." in name``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch
from torch import Tensor, nn

from study.filters import FilterSpec, design, parse


class FixedTaps(nn.Module):
    """Fixed taps, kept as a non-persistent buffer: checkpoints stay portable across filters.

    >>> FixedTaps("triangle-3")()
    tensor([0.2500, 0.5000, 0.2500])
    """

    taps: Tensor

    def __init__(self, spec: str | FilterSpec) -> None:
        super().__init__()
        self.spec = parse(spec)
        self.register_buffer("taps", _as_tensor(design(self.spec)), persistent=False)

    def forward(self) -> Tensor:
        return self.taps

    def extra_repr(self) -> str:
        return str(self.spec)


class LearnableTaps(nn.Module):
    """Trainable taps held at DC gain 1 (and mirror-symmetric if asked) at every step.

    The raw parameter ``weight`` is free; the taps are its projection onto the
    constraint set: symmetrised ``(w + flip(w)) / 2``, then shifted by the same amount
    at every tap so they sum to 1. Both steps are linear projections, so the constraint
    holds exactly whatever the optimiser does, and the gradient is projected with them.

    >>> taps = LearnableTaps("learnable(init=binomial-3)")
    >>> with torch.no_grad():
    ...     _ = taps.weight.add_(torch.tensor([0.3, 0.0, -0.1]))
    >>> taps().detach()  # symmetrised [.35, .5, .35], then shifted to sum 1
    tensor([0.2833, 0.4333, 0.2833])
    """

    def __init__(self, spec: str | FilterSpec) -> None:
        super().__init__()
        self.spec = parse(spec)
        if self.spec.family != "learnable":
            raise ValueError(f"LearnableTaps needs a learnable spec, got {self.spec}")
        self.symmetric = bool(self.spec["symmetric"])
        self.weight = nn.Parameter(_as_tensor(design(self.spec)))

    def forward(self) -> Tensor:
        taps = self.weight
        if self.symmetric:
            taps = 0.5 * (taps + taps.flip(0))
        return taps + (1.0 - taps.sum()) / taps.numel()

    def extra_repr(self) -> str:
        return str(self.spec)


class LearnableCutoff(nn.Module):
    """A windowed sinc whose cutoff frequency is trained (the window method, made
    differentiable): ``h[n] = w[n] * c * sinc(c * (n - (K-1)/2))``, normalised to sum 1.

    ``c`` is a fraction of Nyquist kept in (0, 1) by a sigmoid on the parameter
    ``cutoff_logit``. At initialisation the taps equal ``scipy.signal.firwin``'s.

    >>> module = LearnableCutoff("learnable-cutoff(taps=3, cutoff=0.5, window=boxcar)")
    >>> module().detach(), round(module.cutoff.item(), 6)
    (tensor([0.2800, 0.4399, 0.2800]), 0.5)
    """

    window: Tensor
    positions: Tensor

    def __init__(self, spec: str | FilterSpec) -> None:
        super().__init__()
        self.spec = parse(spec)
        if self.spec.family != "learnable-cutoff":
            raise ValueError(f"LearnableCutoff needs a learnable-cutoff spec, got {self.spec}")
        taps, cutoff = self.spec["taps"], self.spec["cutoff"]
        window = scipy.signal.get_window(self.spec["window"], taps, fftbins=False)
        self.register_buffer("window", _as_tensor(window), persistent=False)
        self.register_buffer("positions", torch.arange(taps) - (taps - 1) / 2, persistent=False)
        self.cutoff_logit = nn.Parameter(torch.tensor(math.log(cutoff / (1 - cutoff))))

    @property
    def cutoff(self) -> Tensor:
        """The current cutoff, a fraction of Nyquist (kept above 1e-6: no 0/0 taps)."""
        return torch.sigmoid(self.cutoff_logit).clamp(min=1e-6)

    def forward(self) -> Tensor:
        cutoff = self.cutoff
        taps = self.window * cutoff * torch.sinc(cutoff * self.positions)
        return taps / taps.sum()

    def extra_repr(self) -> str:
        return f"{self.spec}, cutoff now {self.cutoff.item():.4f}"


def make_taps(spec: str | FilterSpec) -> nn.Module:
    """The taps module for a spec: fixed, learnable taps, or learnable cutoff."""
    spec = parse(spec)
    if spec.family == "learnable":
        return LearnableTaps(spec)
    if spec.family == "learnable-cutoff":
        return LearnableCutoff(spec)
    return FixedTaps(spec)


def _as_tensor(values: np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.get_default_dtype()).clone()
