"""Content-aware low-pass filtering before subsampling (pixel-adaptive anti-aliasing).

Zou, Xiao, Yu & Lee, "Delving deeper into anti-aliasing in ConvNets", BMVC 2020
(reference code: github.com/MaureenZOU/Adaptive-anti-Aliasing, ``Downsample_PASA_group_softmax``).
One fixed blur for every pixel (the paper this project studies) must trade aliasing
against detail everywhere alike; here a small network predicts a ``K x K`` low-pass
kernel for every output pixel and every channel group, from the content around it:

    kernels = softmax_K²(BN(Conv_KxK(x)))           # (N, groups, K*K, H/s, W/s)
    y[n, c, i, j] = sum_k kernels[n, g(c), k, i, j] * x_pad[n, c, s*i + k_h, s*j + k_w]

The softmax over each group's ``K*K`` taps makes every kernel non-negative with taps
summing to 1, so every kernel is a low-pass with DC gain 1 (a constant map stays
constant), as the paper describes. (The reference code takes one softmax over all
groups' taps together, so there each group's kernel sums to its share of 1; with
``groups=1`` the two agree.) Channel
``c`` belongs to group ``g(c) = c // (C / groups)`` (contiguous groups, as the reference).
The predictor runs at the stride, so kernels are computed only where the output is
sampled: the same numbers as the reference's dense prediction followed by subsampling,
for ``1/s²`` of its cost.

The kernels depend on the input, so a circular shift by ``d`` that is not a multiple of
the stride changes what the layer computes; and the predictor's batch norm makes
training-mode outputs depend on the batch. The all-shift evaluation by phases
(:mod:`study.metrics.polyphase`) does not treat these layers: ``method="auto"`` falls
back to naive evaluation for them.

Forms, like the blur layers' (which they subclass with the ``delta`` filter, so they
count as blur layers everywhere): :class:`AdaptiveBlurPool2d` (filter, subsample),
:class:`MaxAdaptiveBlurPool2d` / :class:`AvgAdaptiveBlurPool2d` (pool densely first) and
:class:`AdaptiveBlurConv2d` (a strided convolution run at stride 1, then the filter).
Their predictors are ordinary parameters (``predictor.conv.weight``,
``predictor.norm.*``): a converted model's state dict holds the original's keys and
these. With ``channels=None`` (model surgery, where the pool does not know its input)
the predictor's convolution and norm are lazy and take their size from the first batch.

>>> x = torch.ones(1, 4, 6, 6)
>>> pool = AdaptiveBlurPool2d(4, taps=3, groups=2)
>>> pool(x).shape, bool(torch.allclose(pool(x), torch.ones(1, 4, 3, 3)))
(torch.Size([1, 4, 3, 3]), True)
"""

from __future__ import annotations

from typing import Any

import torch  # noqa: F401 (the doctests use it)
import torch.nn.functional as F
from torch import Tensor, nn

from study.layers.choices import Padding, check_groups, check_kernel_taps
from study.layers.functional import _round, pad2d
from study.layers.geometry import Rounding, pair
from study.layers.modules import (
    BlurAvgPool2d,
    BlurConv2d,
    BlurPool2d,
    DensePoolThen,
    MaxBlurPool2d,
)

__all__ = [
    "CONTENT_AWARE_TYPES",
    "AdaptiveBlurConv2d",
    "AdaptiveBlurPool2d",
    "AvgAdaptiveBlurPool2d",
    "KernelPredictor",
    "MaxAdaptiveBlurPool2d",
    "adaptive_blur_pool2d",
    "check_groups",
    "check_kernel_taps",
]


def adaptive_blur_pool2d(
    x: Tensor,
    kernels: Tensor,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    rounding: Rounding = "ceil",
) -> Tensor:
    """Filter ``x`` ``(N, C, H, W)`` with per-pixel, per-group ``kernels`` ``(N, G, K*K,
    ceil(H/s), ceil(W/s))`` at the sampled pixels: ``(N, C, ceil(H/s), ceil(W/s))``
    (``rounding="floor"``: floor). ``K`` is odd; the input is padded by ``K // 2``.

    A kernel that puts all its weight on its centre tap is plain subsampling:

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> centre = torch.zeros(1, 1, 9, 2, 2)
    >>> centre[:, :, 4] = 1
    >>> adaptive_blur_pool2d(x, centre)
    tensor([[[[ 0.,  2.],
              [ 8., 10.]]]])
    """
    (s_h, s_w), (height, width) = pair(stride), x.shape[-2:]
    batch, channels = x.shape[:2]
    groups, area = kernels.shape[1:3]
    size = round(area**0.5)
    if size * size != area or size % 2 == 0:
        raise ValueError(f"kernels: expected K*K taps with K odd, got {area}")
    if channels % groups:
        raise ValueError(f"kernels: {groups} groups do not divide {channels} channels")
    half = size // 2
    columns = F.unfold(pad2d(x, (half, half, half, half), padding), size, stride=(s_h, s_w))
    out_h, out_w = -(-height // s_h), -(-width // s_w)
    columns = columns.view(batch, groups, channels // groups, area, out_h * out_w)
    weights = kernels.reshape(batch, groups, 1, area, out_h * out_w).to(columns.dtype)
    out = (columns * weights).sum(3).view(batch, channels, out_h, out_w)
    return _round(out, (height, width), (s_h, s_w), rounding)


class KernelPredictor(nn.Module):
    """``(N, C, H, W) -> (N, groups, taps², ceil(H/s), ceil(W/s))``: a ``taps x taps``
    convolution at the stride (the input padded in the ``padding`` mode given to
    ``forward``), batch norm, softmax over each group's taps (Zou et al., Sec. 3.1).
    Weights initialised as the reference's (Kaiming, fan-out)."""

    def __init__(
        self,
        channels: int | None,
        taps: int = 3,
        groups: int = 2,
        stride: int | tuple[int, int] = 2,
    ) -> None:
        super().__init__()
        self.taps, self.groups = check_kernel_taps(taps), check_groups(groups, channels)
        self.stride = pair(stride)
        outputs = groups * taps * taps
        if channels is None:
            self.conv: nn.Module = _LazyKaimingConv2d(outputs, taps, self.stride, bias=False)
            self.norm: nn.Module = nn.LazyBatchNorm2d()
        else:
            self.conv = nn.Conv2d(channels, outputs, taps, self.stride, bias=False)
            self.norm = nn.BatchNorm2d(outputs)
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, padding: Padding = "circular") -> Tensor:
        check_groups(self.groups, x.shape[1])
        half = self.taps // 2
        logits = self.norm(self.conv(pad2d(x, (half, half, half, half), padding)))
        batch, _, out_h, out_w = logits.shape
        logits = logits.view(batch, self.groups, self.taps * self.taps, out_h, out_w)
        return logits.softmax(dim=2)


class _LazyKaimingConv2d(nn.LazyConv2d):
    """``nn.LazyConv2d`` whose weights, once sized by the first batch, are initialised as
    the eager predictor's (Kaiming normal, fan-out) instead of PyTorch's default."""

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_channels != 0:
            nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")


class _ContentAwareMixin:
    """What every content-aware layer adds to its blur layer: the kernel predictor."""

    stride: Any
    rounding: Rounding
    padding: Padding
    channels: int | None

    def _init_predictor(self, taps: int, groups: int) -> None:
        self.predictor = KernelPredictor(self.channels, taps, groups, self.stride)

    def subsample(self, dense: Tensor) -> Tensor:
        kernels = self.predictor(dense, self.padding)
        return adaptive_blur_pool2d(dense, kernels, self.stride, self.padding, self.rounding)

    def _predictor_repr(self) -> str:
        return (
            f"{self.channels}, taps={self.predictor.taps}, groups={self.predictor.groups}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class AdaptiveBlurPool2d(_ContentAwareMixin, BlurPool2d):
    """A predicted per-pixel low-pass, then subsampling: ``(channels, taps=3, groups=2,
    stride=2, padding="circular", rounding="ceil")``, ``(N, C, H, W) -> (N, C,
    ceil(H/s), ceil(W/s))``. ``padding`` pads both the predictor and the filter."""

    def __init__(
        self,
        channels: int | None,
        taps: int = 3,
        groups: int = 2,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "ceil",
    ) -> None:
        super().__init__(channels, "delta", stride, padding, rounding)
        self._init_predictor(taps, groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.subsample(x)

    def extra_repr(self) -> str:
        return self._predictor_repr()


class _PoolContentAware(_ContentAwareMixin, DensePoolThen):
    def __init__(
        self,
        channels: int | None,
        taps: int = 3,
        groups: int = 2,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "floor",
    ) -> None:
        super().__init__(channels, "delta", kernel_size, stride, padding, "pool-blur", rounding)
        self._init_predictor(taps, groups)

    def extra_repr(self) -> str:
        return f"{self._predictor_repr()}, kernel_size={self.kernel_size}"


class MaxAdaptiveBlurPool2d(_PoolContentAware, MaxBlurPool2d):
    """Max-pool densely, the predicted low-pass, subsample: ``(channels, taps=3,
    groups=2, kernel_size=2, stride=2, padding="circular", rounding="floor")``, the
    shape ``nn.MaxPool2d(2, 2)`` gives (Zou et al.'s MaxPool -> PASA)."""


class AvgAdaptiveBlurPool2d(_PoolContentAware, BlurAvgPool2d):
    """Average-pool densely, the predicted low-pass, subsample (arguments as
    :class:`MaxAdaptiveBlurPool2d`)."""


class AdaptiveBlurConv2d(BlurConv2d):
    """A strided convolution whose blur is content-aware: convolve at stride 1, filter
    with predicted kernels, subsample. An ``nn.Conv2d`` with the original ``weight`` and
    ``bias``; ``self.blur`` is an :class:`AdaptiveBlurPool2d` (its predictor sees the
    convolution's output). ``kernel_groups`` is the filter's ``groups`` (the name
    ``groups`` is the convolution's)."""

    def __init__(
        self,
        *args: Any,
        taps: int = 3,
        kernel_groups: int = 2,
        filter: Any = "delta",
        blur_padding: Padding | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, filter=filter, blur_padding=blur_padding, **kwargs)
        padding = blur_padding if blur_padding is not None else self.padding_mode
        blur = AdaptiveBlurPool2d(self.out_channels, taps, kernel_groups, self.stride, padding)
        self.blur = blur.to(device=self.weight.device, dtype=self.weight.dtype)

    @classmethod
    def from_conv(
        cls, conv: Any, taps: int = 3, kernel_groups: int = 2, padding: Padding | None = None
    ) -> Any:
        """The content-aware twin of ``conv``, sharing its parameter tensors
        (``kernel_groups``: the filter's channel groups; ``groups`` is the conv's)."""
        return super().from_conv(conv, "delta", padding, taps=taps, kernel_groups=kernel_groups)

    def _blur_first(self) -> bool:
        return False


CONTENT_AWARE_TYPES = (AdaptiveBlurPool2d, MaxAdaptiveBlurPool2d, AvgAdaptiveBlurPool2d)
"""The content-aware layers (an :class:`AdaptiveBlurConv2d` holds an
:class:`AdaptiveBlurPool2d` as ``blur``)."""
