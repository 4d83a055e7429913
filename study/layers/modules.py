"""Blurred downsampling layers as ``nn.Module``s: the module forms of
:mod:`study.layers.functional`, each holding its filter as ``self.lowpass``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from study.filters import parse
from study.layers import fastpath
from study.layers.choices import ORDERS, PADDING_MODES, FilterLike, Order, Padding, check_choice
from study.layers.functional import avg_blur_pool2d, blur_pool2d, max_blur_pool2d, pad2d
from study.layers.geometry import ROUNDINGS, Rounding
from study.layers.taps import make_taps


class _Blur(nn.Module):
    """What every blur layer shares: a filter (``lowpass``), a stride and a padding mode."""

    def __init__(
        self,
        channels: int | None,
        filter: FilterLike,
        stride: int | tuple[int, int],
        padding: Padding,
        rounding: Rounding,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.spec = parse(filter)
        self.stride = stride
        self.padding = check_choice("padding", padding, PADDING_MODES)
        self.rounding = check_choice("rounding", rounding, ROUNDINGS)
        self.lowpass = make_taps(self.spec)

    def extra_repr(self) -> str:
        return f"{self.channels}, filter={self.spec}, stride={self.stride}, padding={self.padding}"


class BlurPool2d(_Blur):
    """Depthwise low-pass, then subsample (antialiased-cnns' ``BlurPool``).

    ``(N, C, H, W) -> (N, C, ceil(H/stride), ceil(W/stride))``; ``rounding="floor"``
    gives ``floor`` instead. ``filter`` is any spec of :mod:`study.filters`; fixed taps
    are a non-persistent buffer, learnable ones parameters.

    >>> import torch
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> BlurPool2d(1, "rect-2")(x)  # rect-2 + subsampling = 2x2 average pooling
    tensor([[[[ 2.5000,  4.5000],
              [10.5000, 12.5000]]]])
    """

    def __init__(
        self,
        channels: int | None,
        filter: FilterLike = "binomial-5",
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "ceil",
    ) -> None:
        super().__init__(channels, filter, stride, padding, rounding)

    def forward(self, x: Tensor) -> Tensor:
        return blur_pool2d(x, self.lowpass(), self.stride, self.padding, self.rounding)


class _PoolBlur(_Blur):
    """Pool densely, blur, subsample; subclasses name the pooling ``function``."""

    function: Callable[..., Tensor]

    def __init__(
        self,
        channels: int | None,
        filter: FilterLike = "binomial-5",
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        order: Order = "pool-blur",
        rounding: Rounding = "floor",
    ) -> None:
        super().__init__(channels, filter, stride, padding, rounding)
        self.kernel_size = kernel_size
        self.order = check_choice("order", order, ORDERS)

    def forward(self, x: Tensor) -> Tensor:
        taps = self.lowpass()
        return type(self).function(
            x, taps, self.kernel_size, self.stride, self.padding, self.order, self.rounding
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, order={self.order}"


class MaxBlurPool2d(_PoolBlur):
    """MaxPool-BlurDownsample, eq. (3): dense max-pool, blur, subsample.

    ``(channels, filter="binomial-5", kernel_size=2, stride=2, padding="circular",
    order="pool-blur", rounding="floor")``. ``order="blur-pool"`` blurs first, then
    max-pools with the stride (Appendix C). Output size as ``nn.MaxPool2d(2, 2)``:
    ``floor(H/stride)`` (``rounding="ceil"`` keeps ``ceil``).

    >>> import torch
    >>> row = torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]).expand(1, 1, 8, 8)
    >>> pool = MaxBlurPool2d(1, "delta")
    >>> pool(row)[0, 0, 0], pool(row.roll(1, -1))[0, 0, 0]
    (tensor([0., 1., 0., 1.]), tensor([1., 1., 1., 1.]))
    """

    function = max_blur_pool2d


class BlurAvgPool2d(_PoolBlur):
    """AvgPool-BlurDownsample: dense average pool, blur, subsample (arguments as
    :class:`MaxBlurPool2d`)."""

    function = avg_blur_pool2d


class DensePoolThen:
    """Pool densely (stride 1, blurring with the layer's filter), then
    ``self.subsample(dense)``: the layer's own low-pass, if it has one, and subsampling.

    The form of every pool layer whose subsampling is more than a strided slice (APS,
    the ideal low-pass, the content-aware filter): mixed in before a :class:`_PoolBlur`
    subclass, whose ``function``, filter and geometry it reuses. The dense map is
    computed with the fast path off, so it is bit-exactly shift-equivariant.
    """

    function: Callable[..., Tensor]

    def forward(self, x: Tensor) -> Tensor:
        return self.subsample(self.pooled(x))

    def pooled(self, x: Tensor) -> Tensor:
        """The input pooled (and blurred) at stride 1: ``(N, C, H, W)``."""
        with fastpath.suspended():
            return type(self).function(
                x, self.lowpass(), self.kernel_size, 1, self.padding, self.order, "ceil"
            )

    def subsample(self, dense: Tensor) -> Tensor:
        raise NotImplementedError


class BlurConv2d(nn.Conv2d):
    """A strided convolution made ConvBlurDownsample: convolve at stride 1, blur, subsample.

    It is an ``nn.Conv2d`` with the same ``weight`` and ``bias``, so state dicts of the
    strided original load unchanged; ``self.stride`` keeps the original stride and the
    blur layer is ``self.blur``. A 1x1 convolution commutes with the depthwise blur, so
    it is blurred *first* (on the input, at a quarter of the cost for stride 2): the
    same function, except at the border in ``zeros`` mode, where the bias is not
    blurred with the padding.
    """

    def __init__(
        self,
        *args: Any,
        filter: FilterLike = "binomial-5",
        blur_padding: Padding | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        padding = blur_padding if blur_padding is not None else self.padding_mode
        channels = self.in_channels if self._blur_first() else self.out_channels
        self.blur = BlurPool2d(channels, filter, self.stride, padding)

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        filter: FilterLike,
        blur_padding: Padding | None = None,
        **kwargs: Any,
    ) -> BlurConv2d:
        """The blurred twin of ``conv``, sharing its parameter tensors (``kwargs``: the
        subclass's own arguments)."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            filter=filter,
            blur_padding=blur_padding,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            **kwargs,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        return new

    def _blur_first(self) -> bool:
        return self.kernel_size == (1, 1) and self.padding in (0, (0, 0))

    def forward(self, x: Tensor) -> Tensor:
        if self._blur_first():
            return F.conv2d(self.blur(x), self.weight, self.bias, 1, 0, self.dilation, self.groups)
        if self.padding_mode != "zeros":
            x = pad2d(x, self._reversed_padding_repeated_twice, self.padding_mode)
            dense = F.conv2d(x, self.weight, self.bias, 1, 0, self.dilation, self.groups)
        else:
            dense = F.conv2d(x, self.weight, self.bias, 1, self.padding, self.dilation, self.groups)
        return self.blur(dense)


class CircularMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose ``padding`` wraps around instead of padding with ``-inf``.

    It keeps ``kernel_size``, ``stride`` and ``padding``, so model conversion treats it
    as the pool it replaces (``study.convert.circular`` makes these).
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(
            _wrap(x, self.padding),
            self.kernel_size,
            self.stride,
            0,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


class CircularAvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` whose ``padding`` wraps around instead of padding with zeros."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(
            _wrap(x, self.padding),
            self.kernel_size,
            self.stride,
            0,
            self.ceil_mode,
            True,
            self.divisor_override,
        )


def _wrap(x: Tensor, padding: int | tuple[int, int]) -> Tensor:
    pad_h, pad_w = (padding, padding) if isinstance(padding, int) else padding
    return pad2d(x, (pad_w, pad_w, pad_h, pad_h), "circular")
