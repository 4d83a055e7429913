"""Shift families: the shifts a classifier is scored under, each on an exact grid.

The paper's CIFAR protocol (Section 4.2) shifts images *circularly*; the field now also
reports shifts that bring in new content or move it by a fraction of a pixel, where the
operators rank differently (APS is consistent by construction only under circular
shifts of a circularly padded network). Each family is a grid of offsets, evaluated at
every offset, never sampled:

* ``circular``: every ``H x W`` circular shift (eq. 4); scored from the all-shift
  probabilities of :func:`study.metrics.shift_probabilities` (its polyphase fast path).
* ``crop``: zero-fill ("standard") shifts, as LPS and TIPS report them: pad the
  standardised image by ``margin`` zeros on every side (zero is the dataset mean) and
  take the ``H x W`` window at offset ``(dy, dx)``, ``-margin <= dy, dx <= margin``:
  ``(2 margin + 1)^2`` offsets (:func:`crop_window`). Pixels shifted out are lost.
* ``subpixel``: band-limited circular shifts by ``(a / q, b / q)``, ``0 <= a, b < q``:
  ``q^2`` offsets, the integer one included (:func:`subpixel_shift`), as alias-free
  convnets' ``shift_eval.py`` (Michaeli et al., CVPR 2023) scores fractional shifts.

Every family gives the same three scores (:func:`grid_scores`), for ``K`` offsets and
``n_k`` of them classified as class ``k``:

* ``consistency``: the probability that two independent uniformly drawn offsets (the
  same one allowed) give the same top class, ``sum_k (n_k / K)^2``, averaged over images
  (Section 4.2's consistency, exact over the grid);
* ``acc_worst``: the share of images classified correctly at *every* offset (Appendix
  B's adversary, over the grid);
* ``acc_mean``: accuracy averaged over every offset.

``crop`` and ``subpixel`` run one forward pass per shifted image (batched; no exact
shortcut exists for them in general), on the model's device, in eval mode.

>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
>>> images, labels = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
>>> scores = family_scores(net, images, labels, "crop", margin=0)  # one offset: no shift
>>> scores["consistency"], scores["acc_worst"] == scores["acc_mean"]
(1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.metrics.names import (
    DEFAULT_MARGIN,
    DEFAULT_STEPS,
    FAMILIES,
    SCORES,
    SHOWN_BESIDE,
    check_grid,
    crop_offsets,
    describe_family,
    family_metric_names,
    subpixel_offsets,
)
from study.metrics.shifts import check_images, evaluating, model_device

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_STEPS",
    "FAMILIES",
    "SCORES",
    "SHOWN_BESIDE",
    "check_grid",
    "circular_scores",
    "crop_offsets",
    "crop_window",
    "describe_family",
    "family_metric_names",
    "family_scores",
    "family_top_classes",
    "grid_scores",
    "grid_top_classes",
    "subpixel_offsets",
    "subpixel_shift",
]


# --- the shifts ----------------------------------------------------------------------------


def crop_window(padded: Tensor, dy: int, dx: int, margin: int) -> Tensor:
    """The ``H x W`` window of ``padded`` (an image zero-padded by ``margin`` on every
    side) whose content is the image moved by ``(dy, dx)``: ``out[h, w] = x[h - dy, w -
    dx]``, zero where that falls outside ``x`` (what
    :func:`study.metrics.crop_shift` gives, with one padding for the whole grid).

    >>> x = torch.arange(1.0, 5.0).view(1, 1, 4)
    >>> crop_window(F.pad(x, (2, 2, 2, 2)), 0, 1, 2)
    tensor([[[0., 1., 2., 3.]]])
    """
    height, width = padded.shape[-2] - 2 * margin, padded.shape[-1] - 2 * margin
    top, left = margin - dy, margin - dx
    return padded[..., top : top + height, left : left + width]


def _phase_ramp(size: int, offset: float, dtype: torch.dtype) -> Tensor:
    """``(size,)`` complex: the DFT's factor of a band-limited shift by ``offset``
    samples, ``exp(-2 pi i k offset / size)`` for ``k`` in ``fftfreq`` order times the
    size; the Nyquist bin of an even size takes ``cos(pi offset)``, so the shifted signal
    stays real and an integer offset gives the circular shift."""
    k = torch.fft.fftfreq(size, dtype=dtype) * size
    ramp = torch.polar(torch.ones_like(k), -2 * math.pi * k * offset / size)
    if size % 2 == 0:
        ramp[size // 2] = math.cos(math.pi * offset)
    return ramp


def subpixel_shift(x: Tensor, dh: float, dw: float, exact_integers: bool = True) -> Tensor:
    """The band-limited circular shift of ``x`` ``(..., H, W)`` by ``(dh, dw)`` pixels,
    down and right: ``ifft2(fft2(x) * exp(-2 pi i (k_h dh / H + k_w dw / W)))``, real
    part, with the Nyquist convention of :func:`_phase_ramp`; no rounding or clipping.

    An integer offset is the circular shift (eq. 4): with ``exact_integers`` it is taken
    as ``torch.roll``, without the FFT's rounding error.

    >>> x = torch.tensor([[0.0, 1.0, 0.0, -1.0]])  # a sampled sine: exactly band-limited
    >>> subpixel_shift(x, 0, 0.5)
    tensor([[-0.7071,  0.7071,  0.7071, -0.7071]])
    >>> torch.equal(subpixel_shift(x, 0, 1), x.roll(1, -1))
    True
    """
    if exact_integers and float(dh).is_integer() and float(dw).is_integer():
        return torch.roll(x, (int(dh), int(dw)), (-2, -1))
    height, width = x.shape[-2:]
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    ramp = torch.outer(_phase_ramp(height, dh, real), _phase_ramp(width, dw, real))
    shifted = torch.fft.ifft2(torch.fft.fft2(x.to(real)) * ramp.to(x.device)).real
    return shifted.to(x.dtype)


# --- evaluation ----------------------------------------------------------------------------


def grid_top_classes(
    model: nn.Module,
    images: Tensor,
    shifted: Callable[[Tensor, int], Tensor],
    offsets: int,
    batch_size: int = 512,
) -> Tensor:
    """``(N, K)`` long: the top class of every image at each of ``offsets`` shifts;
    ``shifted(chunk, k)`` returns the chunk (on the model's device) at offset ``k``.
    About ``batch_size`` shifted images go through each forward pass. Eval mode,
    float32, on the model's device; the result is on the CPU."""
    check_images(images)
    count = len(images)
    device = model_device(model)
    chunk_size = max(1, min(count, batch_size))
    per_pass = max(1, batch_size // chunk_size)
    top = torch.empty(count, offsets, dtype=torch.long)
    with evaluating(model), torch.inference_mode():
        for start in range(0, count, chunk_size):
            chunk = images[start : start + chunk_size].to(device, torch.float32)
            rows = slice(start, start + len(chunk))
            for first in range(0, offsets, per_pass):
                group = range(first, min(offsets, first + per_pass))
                batch = torch.cat([shifted(chunk, k) for k in group])
                classes = model(batch).argmax(1).view(len(group), len(chunk)).T
                top[rows, first : first + len(group)] = classes.cpu()
    return top


def grid_scores(top: Tensor, labels: Tensor) -> dict[str, float]:
    """The three scores of a family from ``top`` ``(N, K)``, each image's top class at
    each of the grid's ``K`` offsets, and the true ``labels`` ``(N,)``.

    >>> top = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    >>> grid_scores(top, torch.tensor([0, 2]))
    {'consistency': 0.75, 'acc_worst': 0.5, 'acc_mean': 0.75}
    """
    if top.dim() != 2 or labels.shape != top.shape[:1]:
        raise ValueError(f"top: expected (N, K) with labels (N,), got {tuple(top.shape)}")
    count, offsets = top.shape
    classes = int(max(top.max().item(), labels.max().item())) + 1 if count else 1
    votes = F.one_hot(top, classes).sum(1).double() / offsets
    correct = top == labels.view(-1, 1).to(top.device)
    return {
        "consistency": (votes**2).sum(1).mean().item(),
        "acc_worst": correct.all(1).double().mean().item(),
        "acc_mean": correct.double().mean().item(),
    }


def circular_scores(probs: Tensor, labels: Tensor) -> dict[str, float]:
    """The ``circular`` family's scores from the all-shift probabilities ``(N, H, W,
    classes)`` of :func:`study.metrics.shift_probabilities` (its ``consistency`` is
    :func:`study.metrics.consistency`)."""
    return grid_scores(probs.argmax(-1).flatten(1), labels.cpu())


def family_top_classes(
    model: nn.Module,
    images: Tensor,
    family: str,
    margin: int = DEFAULT_MARGIN,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 512,
) -> Tensor:
    """``(N, K)``: each image's top class at every offset of ``family``'s grid (``crop``
    with ``margin``, ``subpixel`` with ``steps``; ``circular`` naively, every shift)."""
    check_images(images)
    height, width = images.shape[-2:]
    check_grid(family, margin, steps, (height, width))
    if family == "crop":
        grid = crop_offsets(margin)

        def shifted(chunk: Tensor, k: int) -> Tensor:
            padded = F.pad(chunk, (margin,) * 4)  # cheap next to the forward pass
            return crop_window(padded, *grid[k], margin)

        return grid_top_classes(model, images, shifted, len(grid), batch_size)
    if family == "subpixel":
        fractions = subpixel_offsets(steps)
        return grid_top_classes(
            model,
            images,
            lambda chunk, k: subpixel_shift(chunk, *fractions[k]),
            len(fractions),
            batch_size,
        )
    rolls = [(dh, dw) for dh in range(height) for dw in range(width)]
    return grid_top_classes(
        model, images, lambda chunk, k: chunk.roll(rolls[k], (-2, -1)), len(rolls), batch_size
    )


def family_scores(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    family: str,
    margin: int = DEFAULT_MARGIN,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 512,
) -> dict[str, float]:
    """``{"consistency", "acc_worst", "acc_mean"}`` of ``model`` on ``images`` ``(N, C,
    H, W)`` (standardised, as the model expects) under every offset of ``family``."""
    top = family_top_classes(model, images, family, margin, steps, batch_size)
    return grid_scores(top, labels.cpu())
