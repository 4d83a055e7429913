"""Adaptive polyphase sampling (APS): subsampling that picks its phase from the data.

Chaman & Dokmanic, "Truly shift-invariant convolutional neural networks", CVPR 2021
(reference code: github.com/achaman2/truly_shift_invariant_cnns). Blur-pool (the
paper this project studies) makes subsampling *nearly* shift-invariant by low-passing
first; APS makes it *exactly* shift-consistent under circular shifts: of the ``s x s``
polyphase components ``x[..., i::s, j::s]`` of the densely evaluated map, keep the one
with the largest norm, per image. A circular shift of the input permutes the components
and circularly shifts each, and the norms are shift-invariant, so the shifted input
selects the shifted component. With circular padding everywhere, a network of APS
layers and a global pool gives the same output for every circular shift of its input.

Every layer here is the densely evaluated layer (pool, blur, convolution at stride 1),
then :func:`aps_downsample`:

* :class:`APSPool2d`: blur with the filter (``delta``: no blur, the paper's plain APS;
  others: "APS + LPF"), then APS;
* :class:`MaxAPSPool2d` / :class:`AvgAPSPool2d`: max/average-pool densely, blur, APS;
* :class:`APSConv2d`: a strided convolution run at stride 1, blurred, then APS.

They subclass the blur layers (same ``filter``/``stride``/``padding``/``rounding``
arguments, the filter as ``self.lowpass``), and add ``norm`` (:data:`APS_NORMS`). APS has
no parameters and no persistent buffers, so state dicts are those of the blur layers.

**Norms** are computed per image over all channels of a component, in float64: a
circular shift only reorders the summands, which can move a float64 sum by a few ulps,
so the choice can only flip between components whose norms agree to ~1e-16.

**Ties.** "The first maximum in row-major phase order" is *not* shift-consistent: a
shift moves each tied component to another phase, and the first of them changes. Ties
are therefore broken by further shift-invariant statistics of each component, in
order: the chosen norm, then the other norms among ``l2, l1, linf``, then the signed
sum (``linf`` ties are systematic after a dense max-pool, whose maximum fills several
phases; these keys separate them). Components that agree on all of them (all-zero or
constant maps, maps periodic with period ``s``, where the tied components are circular
shifts of each other, so any pick is consistent up to a shift) go to the lowest phase
index ``i * s + j``; only components that tie on every key and still differ break
consistency, which random weights make a measure-zero event.

**Linked layers.** Two branches that are added together must subsample on the same
grid: a ResNet's shortcut and its main branch. A layer that :meth:`~_APSMixin.follow`s
another reuses the phases the other chose on the same batch (the main branch runs
first) instead of choosing its own; :func:`study.models.build` and
:func:`study.convert.antialias` link a block's shortcut to its main branch. The phases
of the last call are kept in ``layer.link.phase`` (not saved in state dicts).

**Sizes** that the stride does not divide take components by wrapping around:
component ``i`` is rows ``(i + s*k) mod H``, ``k < ceil(H/s)`` (or ``floor``, at least 1,
with ``rounding="floor"``); shift consistency then no longer holds exactly (nor does it
for any subsampling).

>>> row = torch.tensor([[[[0.0, 1, 0, 3, 0, 2]]]])
>>> aps_downsample(row, (1, 2))  # phases [0, 0, 0] and [1, 3, 2]: the second wins
tensor([[[[1., 3., 2.]]]])
>>> aps_downsample(row.roll(1, -1), (1, 2))  # shifted input: the shifted component
tensor([[[[2., 1., 3.]]]])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from study.layers import fastpath
from study.layers.choices import APS_NORMS, FilterLike, Norm, Order, Padding, check_choice
from study.layers.functional import Rounding, avg_blur_pool2d, blur_pool2d, max_blur_pool2d, pad2d
from study.layers.geometry import output_size, pair
from study.layers.modules import BlurAvgPool2d, BlurConv2d, BlurPool2d, DensePoolThen, MaxBlurPool2d

__all__ = [
    "APS_NORMS",
    "APS_TYPES",
    "APSConv2d",
    "APSPool2d",
    "AvgAPSPool2d",
    "MaxAPSPool2d",
    "PhaseLink",
    "aps_conv2d",
    "aps_downsample",
    "aps_phase",
    "aps_pool2d",
    "avg_aps_pool2d",
    "max_aps_pool2d",
    "polyphase_components",
]


# --- functional ---------------------------------------------------------------------------


def polyphase_components(
    x: Tensor, stride: int | tuple[int, int] = 2, rounding: Rounding = "ceil"
) -> Tensor:
    """``(N, C, H, W) -> (N, s_h * s_w, C, h, w)``: component ``i * s_w + j`` is
    ``x[..., i::s_h, j::s_w]`` (rows wrap around when ``s_h`` does not divide ``H``)."""
    (s_h, s_w), (height, width) = pair(stride), x.shape[-2:]
    out_h, out_w = output_size(height, s_h, rounding), output_size(width, s_w, rounding)
    rows = _phase_indices(height, s_h, out_h, x.device)
    cols = _phase_indices(width, s_w, out_w, x.device)
    parts = x[:, :, rows][..., cols]  # (N, C, s_h, h, s_w, w)
    batch, channels = x.shape[:2]
    return parts.permute(0, 2, 4, 1, 3, 5).reshape(batch, s_h * s_w, channels, out_h, out_w)


def aps_phase(components: Tensor, norm: Norm = "l2") -> Tensor:
    """``(N, P, C, h, w) -> (N,)``: the phase with the largest ``norm`` in each image,
    ties broken by shift-invariant keys, then the lowest index (see the module docs)."""
    check_choice("aps_norm", norm, APS_NORMS)
    with torch.no_grad():
        values = components.detach().flatten(2).double()
        size = values.abs()
        keys = {
            "l2": size.square().sum(-1),  # squared: the same order, no rounding of a sqrt
            "l1": size.sum(-1),
            "linf": size.amax(-1),
        }
        order = [keys.pop(norm), *keys.values(), values.sum(-1)]
        alive = torch.ones(order[0].shape, dtype=torch.bool, device=values.device)
        for key in order:
            masked = key.masked_fill(~alive, float("-inf"))
            alive &= masked == masked.amax(1, keepdim=True)
        return alive.to(torch.uint8).argmax(1)  # the first of what is left


def aps_downsample(
    x: Tensor,
    stride: int | tuple[int, int] = 2,
    norm: Norm = "l2",
    rounding: Rounding = "ceil",
    phase: Tensor | None = None,
    return_phase: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Adaptive polyphase subsampling of ``x`` ``(N, C, H, W)``: the polyphase component
    of largest ``norm`` (``l2``, ``l1``, ``linf``) per image, ``(N, C, H/s, W/s)``.

    ``phase`` ``(N,)`` (indices ``i * s_w + j``) imposes the components instead of
    choosing them; ``return_phase`` also returns the phases used. Gradients flow to the
    selected component only.

    >>> x = torch.tensor([[[[1.0, 0], [0, 0]], [[0, 0], [0, 2]]]])  # 2 channels
    >>> out, phase = aps_downsample(x, 2, "l2", return_phase=True)
    >>> out.flatten(), phase  # phase 3 = (1, 1): norm 2 beats phase 0's norm 1
    (tensor([0., 2.]), tensor([3]))
    """
    check_choice("aps_norm", norm, APS_NORMS)
    components = polyphase_components(x, stride, rounding)
    if phase is None:
        phase = aps_phase(components, norm)
    elif phase.shape != (x.shape[0],):
        raise ValueError(f"phase: expected shape ({x.shape[0]},), got {tuple(phase.shape)}")
    out = components[torch.arange(x.shape[0], device=x.device), phase.to(x.device)]
    return (out, phase) if return_phase else out


def aps_pool2d(
    x: Tensor,
    taps: Tensor,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    norm: Norm = "l2",
    rounding: Rounding = "ceil",
) -> Tensor:
    """Blur (``taps``, at stride 1), then APS: the adaptive twin of ``blur_pool2d``."""
    with fastpath.suspended():  # bit-exact shift-equivariance (see there)
        dense = blur_pool2d(x, taps, 1, padding)
    return aps_downsample(dense, stride, norm, rounding)


def max_aps_pool2d(
    x: Tensor,
    taps: Tensor,
    kernel_size: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    norm: Norm = "l2",
    order: Order = "pool-blur",
    rounding: Rounding = "floor",
) -> Tensor:
    """Max-pool densely (stride 1), blur (``order="blur-pool"``: the other way round),
    then APS. With ``taps=[1.]`` it is the paper's APS max-pool.

    >>> row = torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1])
    >>> pooled = [max_aps_pool2d(r.expand(1, 1, 8, 8), torch.ones(1)) for r in (row, row.roll(1))]
    >>> pooled[0][0, 0, 0], pooled[1][0, 0, 0]  # the shift picks the shifted phase
    (tensor([1., 1., 1., 1.]), tensor([1., 1., 1., 1.]))
    """
    with fastpath.suspended():  # bit-exact shift-equivariance (see there)
        dense = max_blur_pool2d(x, taps, kernel_size, 1, padding, order, "ceil")
    return aps_downsample(dense, stride, norm, rounding)


def avg_aps_pool2d(
    x: Tensor,
    taps: Tensor,
    kernel_size: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    norm: Norm = "l2",
    order: Order = "pool-blur",
    rounding: Rounding = "floor",
) -> Tensor:
    """Average-pool densely (stride 1), blur, then APS."""
    with fastpath.suspended():  # bit-exact shift-equivariance (see there)
        dense = avg_blur_pool2d(x, taps, kernel_size, 1, padding, order, "ceil")
    return aps_downsample(dense, stride, norm, rounding)


def aps_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    taps: Tensor,
    stride: int | tuple[int, int] = 2,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: Padding = "zeros",
    blur_padding: Padding | None = None,
    norm: Norm = "l2",
) -> Tensor:
    """A strided convolution made adaptive: convolve at stride 1 (padding the input in
    ``padding_mode``), blur (``blur_padding``, default ``padding_mode``), then APS."""
    dense = _dense_conv(x, weight, bias, pair(padding), dilation, groups, padding_mode)
    with fastpath.suspended():  # bit-exact shift-equivariance (see there)
        blurred = blur_pool2d(dense, taps, 1, blur_padding or padding_mode)
    return aps_downsample(blurred, stride, norm)


def _dense_conv(x, weight, bias, padding, dilation, groups, padding_mode) -> Tensor:
    if padding_mode != "zeros":
        pad_h, pad_w = padding
        x = pad2d(x, (pad_w, pad_w, pad_h, pad_h), padding_mode)
        padding = (0, 0)
    return F.conv2d(x, weight, bias, 1, padding, dilation, groups)


# --- modules ------------------------------------------------------------------------------


class PhaseLink:
    """The phases an APS layer chose on its last call, for the layers that follow it.

    A plain object (not a module, not a buffer): nothing of it goes into state dicts,
    and a ``deepcopy`` of a model keeps leaders and followers linked.
    """

    def __init__(self) -> None:
        self.phase: Tensor | None = None
        self.size: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return "PhaseLink()"


class _APSMixin:
    """What every APS layer adds to its blur layer: ``norm``, ``link``, ``follows``."""

    stride: Any
    rounding: Rounding

    def _init_aps(self, norm: str) -> None:
        self.norm = check_choice("aps_norm", norm, APS_NORMS)
        self.link = PhaseLink()
        self.follows: PhaseLink | None = None

    def follow(self, leader: _APSMixin) -> _APSMixin:
        """Subsample on the grid ``leader`` chose on the same batch (a shortcut following
        its main branch); ``leader`` must run first. Returns ``self``."""
        self.follows = leader.link
        return self

    def _adaptive(self, dense: Tensor) -> Tensor:
        phase = None
        if self.follows is not None:
            phase, size = self.follows.phase, self.follows.size
            expected = (dense.shape[0], *dense.shape[-2:])
            if phase is None or size != expected:
                raise RuntimeError(
                    f"{type(self).__name__} follows an APS layer that has not run on this "
                    f"batch (it saw {size}, this input is {expected}); the leader must run first"
                )
        out, phase = aps_downsample(dense, self.stride, self.norm, self.rounding, phase, True)
        self.link.phase, self.link.size = phase, (dense.shape[0], *dense.shape[-2:])
        return out

    def _aps_repr(self) -> str:
        return f", norm={self.norm}" + (", follows a leader" if self.follows else "")


class APSPool2d(_APSMixin, BlurPool2d):
    """Blur at stride 1, then adaptive polyphase sampling (APS, Chaman & Dokmanic 2021).

    ``(channels, filter="binomial-5", stride=2, padding="circular", rounding="ceil",
    norm="l2")``; ``filter="delta"`` is plain APS.

    >>> x = torch.tensor([0.0, 1, 0, 3, 0, 2, 0, 0]).expand(1, 1, 2, 8)
    >>> pool = APSPool2d(1, "delta", stride=(1, 2))
    >>> pool(x)[0, 0, 0], pool(x.roll(3, -1))[0, 0, 0]  # a shift of 3 px: shifted by 2 samples
    (tensor([1., 3., 2., 0.]), tensor([2., 0., 1., 3.]))
    """

    def __init__(
        self,
        channels: int | None,
        filter: FilterLike = "binomial-5",
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "ceil",
        norm: Norm = "l2",
    ) -> None:
        super().__init__(channels, filter, stride, padding, rounding)
        self._init_aps(norm)

    def forward(self, x: Tensor) -> Tensor:
        with fastpath.suspended():  # bit-exact shift-equivariance (see there)
            dense = blur_pool2d(x, self.lowpass(), 1, self.padding)
        return self._adaptive(dense)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._aps_repr()


class _PoolAPS(_APSMixin, DensePoolThen):
    def subsample(self, dense: Tensor) -> Tensor:
        return self._adaptive(dense)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._aps_repr()


class MaxAPSPool2d(_PoolAPS, MaxBlurPool2d):
    """Max-pool densely, blur, then APS: :class:`~study.layers.MaxBlurPool2d`'s arguments
    and ``norm``; ``filter="delta"`` is the APS paper's max-pool."""

    function = max_blur_pool2d

    def __init__(self, *args: Any, norm: Norm = "l2", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_aps(norm)


class AvgAPSPool2d(_PoolAPS, BlurAvgPool2d):
    """Average-pool densely, blur, then APS (arguments as :class:`MaxAPSPool2d`)."""

    function = avg_blur_pool2d

    def __init__(self, *args: Any, norm: Norm = "l2", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_aps(norm)


class APSConv2d(BlurConv2d):
    """A strided convolution made adaptive: convolve at stride 1, blur, APS.

    An ``nn.Conv2d`` with the original ``weight`` and ``bias`` (state dicts load
    unchanged); ``self.blur`` is an :class:`APSPool2d`. Unlike :class:`BlurConv2d`, a 1x1
    convolution is *not* moved after the subsampling: APS chooses by the norm of what
    it subsamples, and that changes through a convolution.
    """

    def __init__(
        self,
        *args: Any,
        filter: FilterLike = "binomial-5",
        blur_padding: Padding | None = None,
        norm: Norm = "l2",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, filter=filter, blur_padding=blur_padding, **kwargs)
        padding = blur_padding if blur_padding is not None else self.padding_mode
        self.blur = APSPool2d(self.out_channels, filter, self.stride, padding, norm=norm)

    @classmethod
    def from_conv(
        cls,
        conv: Any,
        filter: FilterLike,
        blur_padding: Padding | None = None,
        norm: Norm = "l2",
    ) -> APSConv2d:
        """The adaptive twin of ``conv``, sharing its parameter tensors."""
        new = super().from_conv(conv, filter, blur_padding)
        new.blur.norm = check_choice("aps_norm", norm, APS_NORMS)
        return new

    def _blur_first(self) -> bool:
        return False


APS_TYPES = (APSPool2d, MaxAPSPool2d, AvgAPSPool2d)
"""The APS layers (an :class:`APSConv2d` holds an :class:`APSPool2d` as ``blur``)."""


def _phase_indices(n: int, stride: int, count: int, device: torch.device) -> Tensor:
    """``(stride, count)``: row ``i`` holds ``(i + stride * k) mod n``."""
    grid = torch.arange(stride, device=device)[:, None] + stride * torch.arange(
        count, device=device
    )
    return grid % n
