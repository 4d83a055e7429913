"""The ideal low-pass: zero every frequency above a cutoff in the Fourier domain, then
subsample.

Michaeli, Michaeli & Soudry, "Alias-free convnets: fractional shift invariance via
polynomial activations", CVPR 2023 (reference code: github.com/hmichaeli/alias_free_convnets)
downsample with this filter. A K-tap blur (the paper this project studies) only
attenuates what subsampling folds back; the ideal filter removes it: with ``cutoff =
1/stride`` every frequency the subsampled map cannot represent is gone before the
subsampling, so (Nyquist bin aside) no input frequency aliases.

**Cutoff** is a fraction of the input's Nyquist frequency, as in scipy's ``firwin`` and
the filter specs (:mod:`study.filters`): ``0.5`` keeps ``|f| <= 0.25`` cycles per pixel,
the band a stride-2 subsampling keeps. Along each axis the mask is 1 below the cutoff, 0
above, and 1/2 on a bin that sits exactly on it (the symmetric choice: the filter stays
real and even); the 2-D mask is the product of the two axes' masks (a square pass-band,
matching subsampling along each axis). ``cutoff=1`` keeps everything.

**Circular** by construction: the FFT treats the map as periodic, so the filter commutes
with circular shifts whatever the ``padding`` of the layer around it (``padding`` is the
dense pool's, for the pool forms). The filter is linear, shift-equivariant and followed
by a fixed-phase subsampling, so :func:`study.metrics.shift_probabilities` evaluates
ideal networks by phases, exactly.

Forms, like the blur layers' (:mod:`study.layers.modules`, which they subclass with the
``delta`` filter, so they count as blur layers everywhere): :class:`IdealPool2d` (filter,
subsample), :class:`MaxIdealPool2d` / :class:`AvgIdealPool2d` (pool densely first) and
:class:`IdealConv2d` (a strided convolution run at stride 1, then the filter). No
parameters, no buffers: state dicts are the blur layers'.

>>> x = torch.tensor([[[[1.0, -1, 1, -1, 1, -1, 1, -1]]]])  # the highest frequency
>>> ideal_lowpass2d(x + 2, 0.5)  # gone; the constant stays
tensor([[[[2., 2., 2., 2., 2., 2., 2., 2.]]]])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from study.layers.functional import Padding, Rounding, blur_pool2d
from study.layers.modules import (
    BlurAvgPool2d,
    BlurConv2d,
    BlurPool2d,
    DensePoolThen,
    MaxBlurPool2d,
)

__all__ = [
    "IDEAL_TYPES",
    "AvgIdealPool2d",
    "IdealConv2d",
    "IdealPool2d",
    "MaxIdealPool2d",
    "check_cutoff",
    "ideal_lowpass2d",
    "ideal_mask",
    "ideal_pool2d",
]

_DELTA = torch.ones(1)


def check_cutoff(cutoff: Any, name: str = "cutoff") -> float:
    """``cutoff`` as a float in ``(0, 1]``, else a one-line ``ValueError``."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float):
        raise ValueError(f"{name}: expected a number in (0, 1], got {cutoff!r}")
    if not (math.isfinite(cutoff) and 0 < cutoff <= 1):
        raise ValueError(f"{name}: expected a number in (0, 1], got {cutoff!r}")
    return float(cutoff)


def _axis_mask(size: int, cutoff: float, one_sided: bool) -> Tensor:
    """Pass-band weights of one axis's FFT bins (``rfftfreq`` order if ``one_sided``)."""
    freqs = torch.fft.rfftfreq(size) if one_sided else torch.fft.fftfreq(size)
    freqs, edge = freqs.double().abs(), cutoff / 2
    if cutoff >= 1:
        return torch.ones_like(freqs)
    mask = (freqs < edge).double()
    on_edge = torch.isclose(freqs, torch.tensor(edge, dtype=torch.float64), rtol=0, atol=1e-12)
    return mask.masked_fill(on_edge, 0.5)


def ideal_mask(height: int, width: int, cutoff: float) -> Tensor:
    """``(height, width // 2 + 1)``: the filter's weights on ``torch.fft.rfft2``'s bins.

    >>> ideal_mask(1, 8, 0.5)  # bins 0..4 of 8: 0.125 passes, 0.25 is on the edge
    tensor([[1.0000, 1.0000, 0.5000, 0.0000, 0.0000]], dtype=torch.float64)
    """
    cutoff = check_cutoff(cutoff)
    return torch.outer(_axis_mask(height, cutoff, False), _axis_mask(width, cutoff, True))


def ideal_lowpass2d(x: Tensor, cutoff: float = 0.5) -> Tensor:
    """``(N, C, H, W) -> (N, C, H, W)``: the ideal (brick-wall) low-pass of ``x``,
    circularly, keeping frequencies up to ``cutoff`` x Nyquist (see the module docs)."""
    cutoff = check_cutoff(cutoff)
    if cutoff >= 1:
        return x
    height, width = x.shape[-2:]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    mask = ideal_mask(height, width, cutoff).to(device=x.device, dtype=dtype)
    spectrum = torch.fft.rfft2(x.to(dtype))
    return torch.fft.irfft2(spectrum * mask, s=(height, width)).to(x.dtype)


def ideal_pool2d(
    x: Tensor,
    cutoff: float = 0.5,
    stride: int | tuple[int, int] = 2,
    rounding: Rounding = "ceil",
) -> Tensor:
    """The ideal low-pass, then subsampling: ``(N, C, ceil(H/s), ceil(W/s))`` (or floor).

    >>> ideal_pool2d(torch.arange(4.0).view(1, 1, 1, 4), 0.5, (1, 2))
    tensor([[[[1.0000, 2.0000]]]])
    """
    return blur_pool2d(
        ideal_lowpass2d(x, cutoff), _DELTA.to(x.device), stride, "circular", rounding
    )


class _IdealMixin:
    """What every ideal layer adds to its blur layer: ``cutoff``, the dense map
    (:meth:`dense`, for the all-shift evaluation by phases) and ``subsample``: filter,
    then keep every ``stride``-th sample."""

    stride: Any
    rounding: Rounding
    pooled: Any  # the dense pool (identity for IdealPool2d)

    def _init_ideal(self, cutoff: float) -> None:
        self.cutoff = check_cutoff(cutoff)

    def dense(self, x: Tensor) -> Tensor:
        """The map the layer subsamples: ``x`` (densely pooled, for the pool forms)
        through the ideal low-pass, at full resolution."""
        return ideal_lowpass2d(self.pooled(x), self.cutoff)

    def subsample(self, dense: Tensor) -> Tensor:
        return ideal_pool2d(dense, self.cutoff, self.stride, self.rounding)

    def _ideal_repr(self) -> str:
        return f"{self.channels}, cutoff={self.cutoff:g}, stride={self.stride}"


class IdealPool2d(_IdealMixin, BlurPool2d):
    """The ideal low-pass, then subsampling.

    ``(channels, cutoff=0.5, stride=2, rounding="ceil")``: ``(N, C, H, W) -> (N, C,
    ceil(H/s), ceil(W/s))``.

    >>> x = torch.tensor([0.0, 4, 0, 4, 0, 4, 0, 4]).expand(1, 1, 2, 8)
    >>> pool = IdealPool2d(1, cutoff=0.5, stride=(1, 2))
    >>> pool(x)[0, 0, 0], pool(x.roll(1, -1))[0, 0, 0]  # the alias of plain subsampling is gone
    (tensor([2., 2., 2., 2.]), tensor([2., 2., 2., 2.]))
    """

    def __init__(
        self,
        channels: int | None,
        cutoff: float = 0.5,
        stride: int | tuple[int, int] = 2,
        rounding: Rounding = "ceil",
        padding: Padding = "circular",
    ) -> None:
        super().__init__(channels, "delta", stride, padding, rounding)
        self._init_ideal(cutoff)

    def forward(self, x: Tensor) -> Tensor:
        return self.subsample(x)

    def pooled(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return self._ideal_repr()


class _PoolIdeal(_IdealMixin, DensePoolThen):
    def __init__(
        self,
        channels: int | None,
        cutoff: float = 0.5,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "floor",
    ) -> None:
        super().__init__(channels, "delta", kernel_size, stride, padding, "pool-blur", rounding)
        self._init_ideal(cutoff)

    def extra_repr(self) -> str:
        return f"{self._ideal_repr()}, kernel_size={self.kernel_size}, padding={self.padding}"


class MaxIdealPool2d(_PoolIdeal, MaxBlurPool2d):
    """Max-pool densely (``kernel_size``, ``padding`` for the pool's window), the ideal
    low-pass, subsample: ``(channels, cutoff=0.5, kernel_size=2, stride=2,
    padding="circular", rounding="floor")``, the shape ``nn.MaxPool2d(2, 2)`` gives."""


class AvgIdealPool2d(_PoolIdeal, BlurAvgPool2d):
    """Average-pool densely, the ideal low-pass, subsample (arguments as
    :class:`MaxIdealPool2d`)."""


class IdealConv2d(BlurConv2d):
    """A strided convolution whose subsampling is ideal: convolve at stride 1, filter,
    subsample. An ``nn.Conv2d`` with the original ``weight`` and ``bias`` (state dicts
    load unchanged); ``self.blur`` is an :class:`IdealPool2d`."""

    def __init__(
        self, *args: Any, cutoff: float = 0.5, filter: Any = "delta", **kwargs: Any
    ) -> None:
        super().__init__(*args, filter=filter, **kwargs)
        self.blur = IdealPool2d(self.out_channels, cutoff, self.stride)

    @classmethod
    def from_conv(cls, conv: Any, cutoff: float = 0.5, padding: Padding | None = None) -> Any:
        """The ideal twin of ``conv``, sharing its parameter tensors."""
        return super().from_conv(conv, "delta", padding, cutoff=cutoff)

    def _blur_first(self) -> bool:
        return False


IDEAL_TYPES = (IdealPool2d, MaxIdealPool2d, AvgIdealPool2d)
"""The ideal layers (an :class:`IdealConv2d` holds an :class:`IdealPool2d` as ``blur``)."""
