"""The ideal low-pass: zero every frequency above a cutoff in the Fourier domain, then
subsample.

Michaeli, Michaeli & Soudry, "Alias-free convnets: fractional shift invariance via
polynomial activations", CVPR 2023 (reference code: github.com/hmichaeli/alias_free_convnets)
downsample with this filter. A K-tap blur (the paper this project studies) only
attenuates what subsampling folds back; the ideal filter removes it: with ``cutoff =
1/stride`` every frequency the subsampled map cannot represent is gone before the
subsampling, so (Nyquist bin aside) no input frequency aliases.

**Cutoff** is a fraction of the input's Nyquist frequency, as in scipy's ``firwin`` and
the filter specs (:mod:`study.filters`): ``0.5`` keeps ``|f| < 0.25`` cycles per pixel,
the band a stride-2 subsampling keeps. The default (``None``) ties it to the layer's
stride, ``1/stride`` on each axis, as the reference does (its stride-4 stem filters at
1/4). Along each axis the mask is 1 below the cutoff and 0 above; a bin that sits
exactly *on* the cutoff (every map whose size is a multiple of ``2 x stride``) gets
``edge``: ``"zero"`` (the default, the reference's ``create_lpf_rect``), or ``"half"``
(1/2, the symmetric choice). Only ``"zero"`` removes every frequency the subsampled map
cannot hold: with ``"half"`` the Nyquist component of the subsampled map survives at
half weight, and its sign flips between the subsampling phases (a one-pixel shift of
the input changes the output's energy). The 2-D mask is the product of the two axes'
masks (a square pass-band, matching subsampling along each axis). ``cutoff=1`` keeps
everything.

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
>>> y = torch.tensor([[[[1.0, 0, -1, 0, 1, 0, -1, 0]]]])  # exactly on the cutoff
>>> ideal_lowpass2d(y, 0.5)[0, 0, 0]
tensor([0., 0., 0., 0., 0., 0., 0., 0.])
>>> ideal_lowpass2d(y, 0.5, edge="half")[0, 0, 0]
tensor([ 0.5000,  0.0000, -0.5000,  0.0000,  0.5000,  0.0000, -0.5000,  0.0000])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from study.layers.choices import EDGES, Padding, check_cutoff, check_edge
from study.layers.functional import blur_pool2d
from study.layers.geometry import Rounding
from study.layers.modules import (
    BlurAvgPool2d,
    BlurConv2d,
    BlurPool2d,
    DensePoolThen,
    MaxBlurPool2d,
)

__all__ = [
    "EDGES",
    "IDEAL_TYPES",
    "AvgIdealPool2d",
    "IdealConv2d",
    "IdealPool2d",
    "MaxIdealPool2d",
    "check_cutoff",
    "check_edge",
    "ideal_lowpass2d",
    "ideal_mask",
    "ideal_pool2d",
    "stride_cutoffs",
]

Cutoff = float | tuple[float, float]

_DELTA = torch.ones(1)


def _pair_of(cutoff: Cutoff, name: str = "cutoff") -> tuple[float, float]:
    if isinstance(cutoff, tuple | list):
        if len(cutoff) != 2:
            raise ValueError(f"{name}: expected a number or a pair (height, width), got {cutoff!r}")
        return check_cutoff(cutoff[0], name), check_cutoff(cutoff[1], name)
    value = check_cutoff(cutoff, name)
    return value, value


def stride_cutoffs(stride: int | tuple[int, int]) -> tuple[float, float]:
    """The default cutoff of a layer: ``1/stride`` on each axis (the band its subsampling
    keeps).

    >>> stride_cutoffs(2), stride_cutoffs((1, 4))
    ((0.5, 0.5), (1.0, 0.25))
    """
    pair = (stride, stride) if isinstance(stride, int) else tuple(stride)
    return 1 / pair[0], 1 / pair[1]


def _axis_mask(size: int, cutoff: float, one_sided: bool, edge: str) -> Tensor:
    """Pass-band weights of one axis's FFT bins (``rfftfreq`` order if ``one_sided``)."""
    freqs = torch.fft.rfftfreq(size) if one_sided else torch.fft.fftfreq(size)
    freqs, limit = freqs.double().abs(), cutoff / 2
    if cutoff >= 1:
        return torch.ones_like(freqs)
    mask = (freqs < limit).double()
    on_edge = torch.isclose(freqs, torch.tensor(limit, dtype=torch.float64), rtol=0, atol=1e-12)
    return mask.masked_fill(on_edge, 0.5 if edge == "half" else 0.0)


def ideal_mask(height: int, width: int, cutoff: Cutoff, edge: str = "zero") -> Tensor:
    """``(height, width // 2 + 1)``: the filter's weights on ``torch.fft.rfft2``'s bins;
    ``cutoff`` for both axes or ``(height's, width's)``.

    >>> ideal_mask(1, 8, 0.5)  # bins 0..4 of 8: 0.125 passes, 0.25 is on the edge
    tensor([[1., 1., 0., 0., 0.]], dtype=torch.float64)
    >>> ideal_mask(1, 8, 0.5, edge="half")
    tensor([[1.0000, 1.0000, 0.5000, 0.0000, 0.0000]], dtype=torch.float64)
    """
    cut_h, cut_w = _pair_of(cutoff)
    check_edge(edge)
    return torch.outer(_axis_mask(height, cut_h, False, edge), _axis_mask(width, cut_w, True, edge))


def ideal_lowpass2d(x: Tensor, cutoff: Cutoff = 0.5, edge: str = "zero") -> Tensor:
    """``(N, C, H, W) -> (N, C, H, W)``: the ideal (brick-wall) low-pass of ``x``,
    circularly, keeping frequencies below ``cutoff`` x Nyquist (a number, or one per
    axis), the bin on the cutoff weighted by ``edge`` (see the module docs)."""
    cuts = _pair_of(cutoff)
    if min(cuts) >= 1:
        return x
    height, width = x.shape[-2:]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    mask = ideal_mask(height, width, cuts, edge).to(device=x.device, dtype=dtype)
    spectrum = torch.fft.rfft2(x.to(dtype))
    return torch.fft.irfft2(spectrum * mask, s=(height, width)).to(x.dtype)


def ideal_pool2d(
    x: Tensor,
    cutoff: Cutoff | None = None,
    stride: int | tuple[int, int] = 2,
    rounding: Rounding = "ceil",
    edge: str = "zero",
) -> Tensor:
    """The ideal low-pass (``cutoff``; default ``1/stride``), then subsampling: ``(N, C,
    ceil(H/s), ceil(W/s))`` (or floor).

    >>> ideal_pool2d(torch.arange(4.0).view(1, 1, 1, 4), 0.5, (1, 2), edge="half")
    tensor([[[[1.0000, 2.0000]]]])
    >>> ideal_pool2d(torch.arange(4.0).view(1, 1, 1, 4), stride=(1, 2))  # 1/stride, edge 0
    tensor([[[[1.5000, 1.5000]]]])
    """
    cuts = stride_cutoffs(stride) if cutoff is None else cutoff
    return blur_pool2d(
        ideal_lowpass2d(x, cuts, edge), _DELTA.to(x.device), stride, "circular", rounding
    )


class _IdealMixin:
    """What every ideal layer adds to its blur layer: ``cutoff``, the dense map
    (:meth:`dense`, for the all-shift evaluation by phases) and ``subsample``: filter,
    then keep every ``stride``-th sample."""

    stride: Any
    rounding: Rounding
    pooled: Any  # the dense pool (identity for IdealPool2d)

    def _init_ideal(self, cutoff: float | None, edge: str) -> None:
        self.cutoff = None if cutoff is None else check_cutoff(cutoff)
        self.edge = check_edge(edge)

    @property
    def cutoffs(self) -> tuple[float, float]:
        """The cutoff on each axis: ``cutoff``, or ``1/stride`` by default."""
        return stride_cutoffs(self.stride) if self.cutoff is None else _pair_of(self.cutoff)

    def dense(self, x: Tensor) -> Tensor:
        """The map the layer subsamples: ``x`` (densely pooled, for the pool forms)
        through the ideal low-pass, at full resolution."""
        return ideal_lowpass2d(self.pooled(x), self.cutoffs, self.edge)

    def subsample(self, dense: Tensor) -> Tensor:
        return ideal_pool2d(dense, self.cutoffs, self.stride, self.rounding, self.edge)

    def _ideal_repr(self) -> str:
        cutoff = "1/stride" if self.cutoff is None else f"{self.cutoff:g}"
        edge = "" if self.edge == "zero" else f", edge={self.edge}"
        return f"{self.channels}, cutoff={cutoff}{edge}, stride={self.stride}"


class IdealPool2d(_IdealMixin, BlurPool2d):
    """The ideal low-pass, then subsampling.

    ``(channels, cutoff=None, stride=2, rounding="ceil", padding="circular",
    edge="zero")``: ``(N, C, H, W) -> (N, C, ceil(H/s), ceil(W/s))``; ``cutoff=None``
    filters at ``1/stride``.

    >>> x = torch.tensor([0.0, 4, 0, 4, 0, 4, 0, 4]).expand(1, 1, 2, 8)
    >>> pool = IdealPool2d(1, stride=(1, 2))
    >>> pool(x)[0, 0, 0], pool(x.roll(1, -1))[0, 0, 0]  # the alias of plain subsampling is gone
    (tensor([2., 2., 2., 2.]), tensor([2., 2., 2., 2.]))
    """

    def __init__(
        self,
        channels: int | None,
        cutoff: float | None = None,
        stride: int | tuple[int, int] = 2,
        rounding: Rounding = "ceil",
        padding: Padding = "circular",
        edge: str = "zero",
    ) -> None:
        super().__init__(channels, "delta", stride, padding, rounding)
        self._init_ideal(cutoff, edge)

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
        cutoff: float | None = None,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "floor",
        edge: str = "zero",
    ) -> None:
        super().__init__(channels, "delta", kernel_size, stride, padding, "pool-blur", rounding)
        self._init_ideal(cutoff, edge)

    def extra_repr(self) -> str:
        return f"{self._ideal_repr()}, kernel_size={self.kernel_size}, padding={self.padding}"


class MaxIdealPool2d(_PoolIdeal, MaxBlurPool2d):
    """Max-pool densely (``kernel_size``, ``padding`` for the pool's window), the ideal
    low-pass, subsample: ``(channels, cutoff=None, kernel_size=2, stride=2,
    padding="circular", rounding="floor", edge="zero")``, the shape ``nn.MaxPool2d(2, 2)``
    gives."""


class AvgIdealPool2d(_PoolIdeal, BlurAvgPool2d):
    """Average-pool densely, the ideal low-pass, subsample (arguments as
    :class:`MaxIdealPool2d`)."""


class IdealConv2d(BlurConv2d):
    """A strided convolution whose subsampling is ideal: convolve at stride 1, filter,
    subsample. An ``nn.Conv2d`` with the original ``weight`` and ``bias`` (state dicts
    load unchanged); ``self.blur`` is an :class:`IdealPool2d`."""

    def __init__(
        self,
        *args: Any,
        cutoff: float | None = None,
        edge: str = "zero",
        filter: Any = "delta",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, filter=filter, **kwargs)
        self.blur = IdealPool2d(self.out_channels, cutoff, self.stride, edge=edge)

    @classmethod
    def from_conv(
        cls,
        conv: Any,
        cutoff: float | None = None,
        padding: Padding | None = None,
        edge: str = "zero",
    ) -> Any:
        """The ideal twin of ``conv``, sharing its parameter tensors."""
        return super().from_conv(conv, "delta", padding, cutoff=cutoff, edge=edge)

    def _blur_first(self) -> bool:
        return False


IDEAL_TYPES = (IdealPool2d, MaxIdealPool2d, AvgIdealPool2d)
"""The ideal layers (an :class:`IdealConv2d` holds an :class:`IdealPool2d` as ``blur``)."""
