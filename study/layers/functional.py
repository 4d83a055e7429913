"""Blurred downsampling as functions on ``(N, C, H, W)`` tensors (Section 3.2, eq. 3).

Conventions shared by every function here:

* ``taps`` is a 1-D tensor ``(K,)`` summing to 1; the 2-D blur is its outer product,
  applied as a vertical then a horizontal depthwise pass (Appendix E.2, eq. 5), so the
  cost grows linearly with K. Like ``torch.nn.functional.conv2d``, the pass is a
  correlation: ``y[j] = sum_k taps[k] * x[s*j + k - (K-1)//2]``.
* ``padding`` is one of :data:`PADDING_MODES`. ``circular`` is the paper's testbed
  (Section 4.1): with it, shifting the input by ``stride`` pixels shifts the output by
  exactly one. Every mode works on maps of any size, 1x1 included.
* A K-tap blur pads ``(K-1)//2`` before and ``K//2`` after, so the output has exactly
  ``ceil(H / stride)`` rows for odd and even K alike. Even K is centred half a pixel
  after the sample: ``rect-2`` then subsampling is exactly ``AvgPool2d(2, 2)``.
* ``rounding="floor"`` crops the output to ``floor(H / stride)`` rows, the size
  ``nn.MaxPool2d(2, 2)`` gives, so a converted layer matches its original's shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from study.layers import fastpath
from study.layers.choices import ORDERS, Order, Padding
from study.layers.geometry import Rounding, check_rounding, pair


def pad2d(x: Tensor, pad: tuple[int, int, int, int], mode: Padding, value: float = 0.0) -> Tensor:
    """Pad the last two dimensions by ``(left, right, top, bottom)``, like ``F.pad``,
    but for any pad size: ``circular`` wraps, ``reflect`` mirrors (edge not repeated)
    and ``replicate`` clamps as often as needed, so 1x1 and 2x2 maps work too.

    >>> pad2d(torch.arange(2.0).view(1, 1, 1, 2), (3, 3, 0, 0), "circular")
    tensor([[[[1., 0., 1., 0., 1., 0., 1., 0.]]]])
    >>> pad2d(torch.arange(3.0).view(1, 1, 1, 3), (4, 4, 0, 0), "reflect")
    tensor([[[[0., 1., 2., 1., 0., 1., 2., 1., 0., 1., 2.]]]])
    """
    left, right, top, bottom = pad
    if not any(pad):
        return x
    if mode == "zeros":
        return F.pad(x, pad, value=value)
    height, width = x.shape[-2:]
    limit_w, limit_h = (width, height) if mode == "circular" else (width - 1, height - 1)
    fits = max(left, right) <= limit_w and max(top, bottom) <= limit_h
    if mode != "replicate" and fits and x.dim() in (3, 4):  # F.pad's own modes need 3-D/4-D
        return F.pad(x, pad, mode=mode)
    rows = _padded_indices(height, top, bottom, mode, x.device)
    cols = _padded_indices(width, left, right, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _padded_indices(n: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    index = torch.arange(-before, n + after, device=device)
    if mode == "circular":
        return index % n
    if mode == "replicate" or n == 1:
        return index.clamp(0, n - 1)
    period = 2 * n - 2  # reflect: 0 1 2 1 0 1 2 ...
    index = index % period
    return torch.where(index < n, index, period - index)


def blur_pool2d(
    x: Tensor,
    taps: Tensor,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    rounding: Rounding = "ceil",
    separable: bool = True,
) -> Tensor:
    """Low-pass filter, then subsample: ``Downsample_s(Blur(x))`` (eq. 3 without the pool).

    ``x``: ``(N, C, H, W)``; returns ``(N, C, ceil(H/s), ceil(W/s))`` (or floor).
    ``stride=1`` is a plain blur. ``separable=False`` runs one K x K depthwise
    convolution with the outer-product kernel instead of two 1-D passes: the same
    numbers, and on some devices faster for small K (docs/PERFORMANCE.md).

    The paper's toy example (Fig. 3), after dense max-pooling, blurred with triangle-3:

    >>> dense = torch.tensor([[[[0.0, 1, 1, 1, 0, 1, 1, 1]]]])
    >>> blur_pool2d(dense, torch.tensor([0.25, 0.5, 0.25]), stride=(1, 2))
    tensor([[[[0.5000, 1.0000, 0.5000, 1.0000]]]])
    """
    stride_h, stride_w = pair(stride)
    in_size = x.shape[-2:]
    size = taps.numel()
    if fastpath.applies(x):  # CPU: blur and subsample as matrix products (fastpath.py)
        check_rounding(rounding)
        return fastpath.blur_pool2d(x, taps, (stride_h, stride_w), padding, rounding)
    if size == 1:
        out = x[..., ::stride_h, ::stride_w]
    else:
        before, after = (size - 1) // 2, size // 2
        x = pad2d(x, (before, after, before, after), padding)
        channels = x.shape[1]
        taps = taps.to(dtype=x.dtype)
        if separable:
            vertical = taps.view(1, 1, size, 1).expand(channels, 1, size, 1)
            horizontal = taps.view(1, 1, 1, size).expand(channels, 1, 1, size)
            out = F.conv2d(x, vertical, stride=(stride_h, 1), groups=channels)
            out = F.conv2d(out, horizontal, stride=(1, stride_w), groups=channels)
        else:
            kernel = torch.outer(taps, taps).expand(channels, 1, size, size)
            out = F.conv2d(x, kernel, stride=(stride_h, stride_w), groups=channels)
    return _round(out, in_size, (stride_h, stride_w), rounding)


def max_blur_pool2d(
    x: Tensor,
    taps: Tensor,
    kernel_size: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    order: Order = "pool-blur",
    rounding: Rounding = "floor",
) -> Tensor:
    """MaxPool-BlurDownsample, eq. (3): max-pool densely (stride 1), blur, subsample.

    ``order="blur-pool"`` is Appendix C's alternative: blur densely, then max-pool with
    the stride. The dense pool pads like the blur (``zeros`` pads with ``-inf``).

    The paper's toy example (Section 3.2, Fig. 3), rows ``[0, 0, 1, 1, 0, 0, 1, 1]``
    and the same shifted by one, with triangle-3:

    >>> row = torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1])
    >>> tri = torch.tensor([0.25, 0.5, 0.25])
    >>> max_blur_pool2d(row.expand(1, 1, 8, 8), tri)[0, 0, 0]
    tensor([0.5000, 1.0000, 0.5000, 1.0000])
    >>> max_blur_pool2d(row.roll(1).expand(1, 1, 8, 8), tri)[0, 0, 0]
    tensor([0.7500, 0.7500, 0.7500, 0.7500])
    """
    return _pool_blur_pool(x, taps, F.max_pool2d, kernel_size, stride, padding, order, rounding)


def avg_blur_pool2d(
    x: Tensor,
    taps: Tensor,
    kernel_size: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] = 2,
    padding: Padding = "circular",
    order: Order = "pool-blur",
    rounding: Rounding = "floor",
) -> Tensor:
    """AvgPool-BlurDownsample: average-pool densely (stride 1), blur, subsample.

    With ``taps=[1.]`` it is exactly ``AvgPool2d(kernel_size, stride)`` on inputs whose
    size the stride divides.
    """
    return _pool_blur_pool(x, taps, F.avg_pool2d, kernel_size, stride, padding, order, rounding)


def _pool_blur_pool(x, taps, pool, kernel_size, stride, padding, order, rounding) -> Tensor:
    kernel = pair(kernel_size)
    if order == "pool-blur" and pool is F.avg_pool2d and fastpath.applies(x):
        check_rounding(rounding)  # the dense box is folded into the blur's matrices
        return fastpath.blur_pool2d(x, taps, pair(stride), padding, rounding, box=kernel)
    if order == "pool-blur":
        dense = _padded_pool(x, pool, kernel, (1, 1), padding)
        return blur_pool2d(dense, taps, stride, padding, rounding)
    if order == "blur-pool":
        blurred = blur_pool2d(x, taps, 1, padding)
        pooled = _padded_pool(blurred, pool, kernel, pair(stride), padding)
        return _round(pooled, x.shape[-2:], pair(stride), rounding)
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def _padded_pool(x, pool, kernel, stride, padding) -> Tensor:
    """``pool`` with ``kernel - 1`` padding in ``padding`` mode: ``ceil(H / stride)`` rows.

    At stride 1 the window is reduced one axis at a time over shifted slices (max and
    mean are separable over a rectangle): the same numbers as ``pool``, and several
    times faster than PyTorch's stride-1 pooling on CPU (bench/forward_time.py).
    """
    (k_h, k_w) = kernel
    if (k_h, k_w) == (1, 1) and stride == (1, 1):
        return x
    is_max = pool is F.max_pool2d
    if is_max and stride == (1, 1) and max(kernel) <= 2 and fastpath.applies(x):
        return fastpath.dense_max2(x, kernel, padding)  # exact, with a lean backward
    fill = float("-inf") if is_max else 0.0
    x = pad2d(x, ((k_w - 1) // 2, k_w // 2, (k_h - 1) // 2, k_h // 2), padding, value=fill)
    if stride != (1, 1):
        return pool(x, kernel, stride)
    reduce = torch.maximum if is_max else torch.add
    height, width = x.shape[-2] - k_h + 1, x.shape[-1] - k_w + 1
    rows = x[..., :height, :]
    for offset in range(1, k_h):
        rows = reduce(rows, x[..., offset : offset + height, :])
    out = rows[..., :width]
    for offset in range(1, k_w):
        out = reduce(out, rows[..., offset : offset + width])
    return out if is_max else out / (k_h * k_w)


def _round(out: Tensor, in_size, stride: tuple[int, int], rounding: Rounding) -> Tensor:
    """Crop a ``ceil(H / stride)`` output to ``floor(H / stride)`` (at least 1) if asked."""
    if check_rounding(rounding) == "ceil":
        return out
    height, width = in_size
    return out[..., : max(1, height // stride[0]), : max(1, width // stride[1])]
