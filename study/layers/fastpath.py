"""The CPU fast path of :mod:`study.layers.functional`.

Two pieces, both exact (the same numbers as the convolution path to rounding, the same
gradients, ties included):

* **Blur + subsample as two small matrix products.** Along one axis, padding (any mode),
  a K-tap correlation and subsampling by ``s`` form one linear map from ``n`` inputs to
  ``n_out`` outputs: the ``(n_out, n)`` matrix ``A`` whose row ``j`` holds ``taps[k]`` in
  the column that padded position ``s*j + k - (K-1)//2`` reads (wrapped for
  ``circular``, mirrored for ``reflect``, clamped for ``replicate``, dropped for
  ``zeros``; taps landing on the same column add up). The 2-D blur is then
  ``A_h @ x @ A_w^T``: one GEMM ``x.view(-1, W) @ A_w^T`` and one batched GEMM by
  ``A_h``; on maps of at most :data:`KRON_MAX_PIXELS` pixels a single GEMM by the
  Kronecker product ``A_h (x) A_w``. Autograd of ``matmul`` gives exact gradients, and
  a dense average pool before the blur is folded into the same matrices. The matrices
  are cached per (size, taps, padding, stride, rounding, dtype, device); learnable taps
  (``requires_grad``) are scattered into a fresh matrix each call, so their gradient
  flows too.
* **The dense 2-wide max** (``MaxPool2d(2, stride=1)`` with the layer's padding) as a
  custom autograd function per axis, ``max(x[i], x[i+1])`` with the padded neighbour of
  the last element read in place (no padded copy). Backward is one multiply, one
  subtraction and a shifted add, with ``torch.maximum``'s rule for ties (each side gets
  half the gradient), instead of autograd's chain of masks, slice and pad backwards.

:func:`applies` chooses: CPU, floating point, and maps of at most :data:`MAX_SIZE`
pixels a side (a dense ``n_out x n`` matrix costs ``n`` multiply-adds per output pixel
and axis against ``K`` for the convolution, which BLAS outruns by far on CIFAR-sized
maps, not on ImageNet-sized ones). Everything else (CUDA included: not measured yet) keeps
the convolution path. ``STUDY_LAYERS_FASTPATH=0`` turns the fast path off.
docs/layers.md and docs/PERFORMANCE.md (bench/train_step.py) have the details.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

import torch
from torch import Tensor

from study.layers.geometry import output_size

MAX_SIZE = 64  # largest H or W taken by the matrix path
KRON_MAX_PIXELS = 100  # H * W up to which one Kronecker GEMM beats two GEMMs
ENABLED = os.environ.get("STUDY_LAYERS_FASTPATH", "1") != "0"
_SUSPENDED: ContextVar[bool] = ContextVar("study_layers_fastpath_suspended", default=False)


@contextmanager
def suspended() -> Iterator[None]:
    """The convolution path inside this block. A matrix product may sum a row's terms in
    another order than its shifted twin's, so its output is shift-equivariant only to
    float rounding (about 1e-7); the convolution's is bit for bit. Adaptive polyphase
    sampling needs the bits: it compares the norms of the polyphase components, and a
    near tie decided by rounding picks a component the shift did not pick."""
    token = _SUSPENDED.set(True)
    try:
        yield
    finally:
        _SUSPENDED.reset(token)


def applies(x: Tensor) -> bool:
    """Whether the fast path runs for ``x``: enabled, CPU, floating, 4-D, small maps, and
    not traced by ``torch.compile`` or ``torch.export`` (its matrix cache is keyed by the
    taps' values, which a trace cannot read)."""
    return (
        ENABLED
        and not _SUSPENDED.get()
        and not torch.compiler.is_compiling()  # compile / export trace the conv path
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype in (torch.float32, torch.float64)
        and max(x.shape[-2:]) <= MAX_SIZE
    )


# -- blur + subsample as matrices -------------------------------------------------------


def source_index(n: int, position: int, mode: str) -> int | None:
    """The input index that padded position ``position`` (may be < 0 or >= n) reads."""
    if 0 <= position < n:
        return position
    if mode == "zeros":
        return None
    if mode == "circular":
        return position % n
    if mode == "replicate" or n == 1:
        return min(max(position, 0), n - 1)
    period = 2 * n - 2  # reflect: 0 1 2 1 0 1 2 ...
    position %= period
    return position if position < n else period - position


@lru_cache(maxsize=512)
def _scatter(n: int, size: int, stride: int, mode: str, n_out: int) -> tuple[Tensor, ...]:
    """Rows, columns and tap numbers of the entries of the ``(n_out, n)`` blur matrix.
    Cached, so made as normal tensors even under ``torch.inference_mode()`` (an
    inference tensor cannot be saved for a later backward)."""
    rows, cols, taps = [], [], []
    before = (size - 1) // 2
    for j in range(n_out):
        for k in range(size):
            i = source_index(n, stride * j + k - before, mode)
            if i is not None:
                rows.append(j)
                cols.append(i)
                taps.append(k)
    with torch.inference_mode(False):
        return torch.tensor(rows), torch.tensor(cols), torch.tensor(taps, dtype=torch.long)


def blur_matrix(
    n: int, taps: Tensor, stride: int, mode: str, rounding: str = "ceil", box: int = 1
) -> Tensor:
    """The ``(n_out, n)`` matrix of pad + correlate with ``taps`` + subsample on one axis.

    ``box > 1`` first applies a dense ``box``-wide average pool with the same padding
    (``box - 1`` padded: ``(box-1)//2`` before, ``box//2`` after), as
    ``avg_blur_pool2d`` does. Differentiable in ``taps``.
    """
    n_out = output_size(n, stride, rounding)
    rows, cols, which = _scatter(n, taps.numel(), stride, mode, n_out)
    matrix = taps.new_zeros(n_out, n)
    matrix = matrix.index_put((rows, cols), taps[which], accumulate=True)
    if box > 1:
        ones = taps.new_full((box,), 1.0 / box)
        rows, cols, which = _scatter(n, box, 1, mode, n)
        pool = taps.new_zeros(n, n).index_put((rows, cols), ones[which], accumulate=True)
        matrix = matrix @ pool
    return matrix


_CACHE: dict[tuple, Tensor] = {}


def _matrices(x: Tensor, taps: Tensor, stride, mode, rounding, box) -> tuple[Tensor, Tensor]:
    taps = taps.to(dtype=x.dtype, device=x.device)
    height, width = x.shape[-2:]
    if taps.requires_grad:
        return (
            blur_matrix(height, taps, stride[0], mode, rounding, box[0]),
            blur_matrix(width, taps, stride[1], mode, rounding, box[1]),
        )
    key = (height, width, tuple(taps.tolist()), stride, mode, rounding, box, x.dtype, x.device)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) > 1024:
            _CACHE.clear()
        with torch.inference_mode(False):  # cached: normal tensors, whatever the caller's mode
            taps = taps.clone()
            found = (
                blur_matrix(height, taps, stride[0], mode, rounding, box[0]),
                blur_matrix(width, taps, stride[1], mode, rounding, box[1]),
            )
            if height * width <= KRON_MAX_PIXELS:
                found = (*found, torch.kron(found[0], found[1]).T.contiguous())
        _CACHE[key] = found
    return found


def blur_pool2d(
    x: Tensor,
    taps: Tensor,
    stride: tuple[int, int],
    padding: str,
    rounding: str = "ceil",
    box: tuple[int, int] = (1, 1),
) -> Tensor:
    """``functional.blur_pool2d`` (after a dense ``box`` average pool) by matrix products."""
    if padding not in ("circular", "reflect", "replicate", "zeros"):
        raise ValueError(f"padding must be circular, reflect, replicate or zeros: {padding!r}")
    batch, channels, height, width = x.shape
    matrices = _matrices(x, taps, stride, padding, rounding, box)
    rows, cols = matrices[0], matrices[1]
    n_rows, n_cols = rows.shape[0], cols.shape[0]
    flat = x.reshape(batch * channels, height * width)
    if len(matrices) == 3:  # small map: one GEMM by the Kronecker product
        return (flat @ matrices[2]).view(batch, channels, n_rows, n_cols)
    if height * width <= KRON_MAX_PIXELS:
        kron = torch.kron(rows, cols).T
        return (flat @ kron).view(batch, channels, n_rows, n_cols)
    out = x.reshape(-1, width) @ cols.T  # (N*C*H, Wo)
    out = torch.matmul(rows, out.view(batch * channels, height, n_cols))
    return out.view(batch, channels, n_rows, n_cols)


# -- the dense 2-wide max ---------------------------------------------------------------


class _PairMax(torch.autograd.Function):
    """``out[i] = max(x[i], x[i+1])`` along ``dim``; ``x[n]`` is ``x[extra]``, or
    ``-inf`` when ``extra`` is None (zeros padding pads a max with ``-inf``)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, extra: int | None) -> Tensor:
        n = x.shape[dim]
        if extra is None:
            last = torch.full_like(x.narrow(dim, 0, 1), float("-inf"))
        else:
            last = x.narrow(dim, extra, 1)
        following = torch.cat([x.narrow(dim, 1, n - 1), last], dim)
        # weight of x[i] in the gradient: 1, 1/2 on ties, 0 (torch.maximum's rule)
        weight = torch.sub(x, following).sign_().add_(1.0).mul_(0.5)
        ctx.save_for_backward(weight)
        ctx.dim, ctx.extra = dim, extra
        return torch.maximum(x, following)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (weight,) = ctx.saved_tensors
        dim, extra = ctx.dim, ctx.extra
        n = grad.shape[dim]
        own = grad * weight
        other = grad - own  # the gradient of x[i+1]
        own.narrow(dim, 1, n - 1).add_(other.narrow(dim, 0, n - 1))
        if extra is not None:
            own.narrow(dim, extra, 1).add_(other.narrow(dim, n - 1, 1))
        return own, None, None


def dense_max2(x: Tensor, kernel: tuple[int, int], padding: str) -> Tensor:
    """``MaxPool(kernel, stride=1)`` with ``kernel - 1`` padding in ``padding`` mode, for
    kernel sides of 1 or 2 (``functional._padded_pool`` at stride 1)."""
    for dim, side in ((-2, kernel[0]), (-1, kernel[1])):
        if side == 2:
            n = x.shape[dim]
            x = _PairMax.apply(x, dim, source_index(n, n, padding))
    return x
