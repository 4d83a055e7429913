"""Batched training augmentation on whatever device the batch lives on.

Every function takes ``(B, C, H, W)`` images (uint8 or float; the output keeps the
dtype and device) and draws its randomness from a :class:`torch.Generator`, so a seed
fixes the result. Random numbers are drawn on the generator's device (a CPU generator
gives the same draws whether the batch is on the CPU or a GPU) and moved to the batch.
No per-image Python loops: crops and shifts are two ``gather`` calls with per-image
index arithmetic.

:func:`augment` applies one of :data:`AUGMENTATIONS` by name: ``crop`` is the CIFAR
recipe (pad by ``padding``, crop back at a uniform offset); ``shift`` is a circular
shift by up to ``max_shift`` pixels (eq. 4, uniform over the distinct shifts; the
paper's shift-based augmentation with ``max_shift >= H/2``), the transformation the
shift metrics measure.

>>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
>>> crop_at(x, 1, torch.tensor([[0, 2]]))[0, 0]
tensor([[ 0,  0,  0,  0],
        [ 1,  2,  3,  0],
        [ 5,  6,  7,  0],
        [ 9, 10, 11,  0]], dtype=torch.uint8)
"""

from __future__ import annotations

import torch
from torch import Tensor

from study.data.names import AUGMENTATIONS

CROP_MODES = ("zeros", "circular")


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images: expected a tensor of shape (B, C, H, W), got {shape}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")


def _check_pairs(name: str, pairs: Tensor, batch: int) -> None:
    if not isinstance(pairs, Tensor) or tuple(pairs.shape) != (batch, 2):
        shape = tuple(pairs.shape) if isinstance(pairs, Tensor) else type(pairs).__name__
        raise ValueError(f"{name}: expected a tensor of shape ({batch}, 2), got {shape}")
    if pairs.is_floating_point() or pairs.is_complex() or pairs.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer entries, got {pairs.dtype}")


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _gather(x: Tensor, rows: Tensor, cols: Tensor, valid: Tensor | None = None) -> Tensor:
    """``out[b, c, i, j] = x[b, c, rows[b, i], cols[b, j]]``, zero where ``valid`` is
    false. ``rows`` is ``(B, H)``, ``cols`` ``(B, W)``, ``valid`` ``(B, H, W)``."""
    batch, channels, height, width = x.shape
    index = rows.view(batch, 1, height, 1).expand(batch, channels, height, width)
    out = x.gather(2, index)
    index = cols.view(batch, 1, 1, width).expand(batch, channels, height, width)
    out = out.gather(3, index)
    if valid is not None:
        out = out.masked_fill(~valid.unsqueeze(1), 0)
    return out


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability 0.5."""
    _check_images(x)
    flip = torch.rand(len(x), generator=generator, device=_device(generator)) < 0.5
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def _crop(x: Tensor, padding: int, offsets: Tensor, mode: str) -> Tensor:
    height, width = x.shape[-2:]
    offsets = offsets.to(device=x.device, dtype=torch.long)
    rows = torch.arange(height, device=x.device) + offsets[:, :1] - padding  # (B, H)
    cols = torch.arange(width, device=x.device) + offsets[:, 1:] - padding  # (B, W)
    if mode == "circular":
        return _gather(x, rows.remainder(height), cols.remainder(width))
    inside_rows = (rows >= 0) & (rows < height)
    inside_cols = (cols >= 0) & (cols < width)
    valid = inside_rows.unsqueeze(2) & inside_cols.unsqueeze(1)
    return _gather(x, rows.clamp(0, height - 1), cols.clamp(0, width - 1), valid)


def crop_at(x: Tensor, padding: int, offsets: Tensor, mode: str = "zeros") -> Tensor:
    """Pad each image by ``padding`` on every side and crop ``H x W`` back out, with
    image ``b``'s top-left corner at ``offsets[b] = (top, left)`` of the padded image,
    ``0 <= top, left <= 2 * padding``; ``padding`` offsets give the image itself.

    ``mode``: ``"zeros"`` pads with zeros (torchvision's ``RandomCrop(padding,
    padding_mode="constant", fill=0)``); ``"circular"`` wraps around (``F.pad(...,
    mode="circular")``, for any ``padding``), a circular shift by
    ``(padding - top, padding - left)``.
    """
    _check_images(x)
    _check_count("padding", padding)
    if mode not in CROP_MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(CROP_MODES)}")
    _check_pairs("offsets", offsets, len(x))
    if len(x) and (offsets.min() < 0 or offsets.max() > 2 * padding):
        raise ValueError(f"offsets: every entry must lie in [0, {2 * padding}]")
    return _crop(x, padding, offsets, mode)


def random_crop(
    x: Tensor, padding: int = 4, mode: str = "zeros", generator: torch.Generator | None = None
) -> Tensor:
    """:func:`crop_at` with each image's ``(top, left)`` uniform in ``[0, 2 * padding]``."""
    _check_images(x)
    _check_count("padding", padding)
    if mode not in CROP_MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(CROP_MODES)}")
    offsets = torch.randint(
        0, 2 * padding + 1, (len(x), 2), generator=generator, device=_device(generator)
    )
    return _crop(x, padding, offsets, mode)


def shift_at(x: Tensor, shifts: Tensor) -> Tensor:
    """Circular shift of image ``b`` by ``shifts[b] = (dh, dw)``: the same as
    ``torch.roll(x[b], (dh, dw), (-2, -1))`` for every ``b`` (any integers)."""
    _check_images(x)
    _check_pairs("shifts", shifts, len(x))
    return _shift(x, shifts)


def _shift(x: Tensor, shifts: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    shifts = shifts.to(device=x.device, dtype=torch.long)
    rows = (torch.arange(height, device=x.device) - shifts[:, :1]).remainder(height)
    cols = (torch.arange(width, device=x.device) - shifts[:, 1:]).remainder(width)
    return _gather(x, rows, cols)


def circular_offsets(size: int, max_shift: int) -> Tensor:
    """The distinct circular shifts of an axis of ``size`` pixels within ``max_shift``
    each way: ``-max_shift..max_shift`` while those are distinct modulo ``size``, else
    every shift ``0..size-1`` once (``-16`` and ``16`` are the same shift of a 32-pixel
    axis, so drawing from ``[-16, 16]`` would favour it twice).

    >>> circular_offsets(32, 2).tolist(), len(circular_offsets(32, 16))
    ([-2, -1, 0, 1, 2], 32)
    """
    _check_count("max_shift", max_shift)
    if 2 * max_shift + 1 >= size:
        return torch.arange(size)
    return torch.arange(-max_shift, max_shift + 1)


def random_circular_shifts(
    count: int,
    size: tuple[int, int],
    max_shift: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(count, 2)`` circular shifts ``(dh, dw)``, each axis uniform over its
    :func:`circular_offsets`: every distinct shift within ``max_shift`` equally likely
    (eq. 4's ``Shift``; ``max_shift >= H/2`` draws uniformly from all ``H x W``)."""
    device = _device(generator)
    columns = []
    for length in size:
        offsets = circular_offsets(length, max_shift).to(device)
        columns.append(
            offsets[torch.randint(len(offsets), (count,), generator=generator, device=device)]
        )
    return torch.stack(columns, 1)


def random_shift(x: Tensor, max_shift: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """:func:`shift_at` with each image's ``(dh, dw)`` drawn by
    :func:`random_circular_shifts`: uniform over the distinct circular shifts within
    ``max_shift`` pixels each way."""
    _check_images(x)
    _check_count("max_shift", max_shift)
    return _shift(x, random_circular_shifts(len(x), tuple(x.shape[-2:]), max_shift, generator))


def augment(
    x: Tensor,
    kind: str,
    generator: torch.Generator | None = None,
    padding: int = 4,
    mode: str = "zeros",
    max_shift: int = 4,
) -> Tensor:
    """Apply the augmentation named ``kind`` (one of :data:`AUGMENTATIONS`) to a batch.

    ``"none"`` returns ``x`` itself; in the combinations the flip comes first.
    ``padding`` and ``mode`` configure ``crop`` (:func:`random_crop`), ``max_shift``
    configures ``shift`` (:func:`random_shift`).
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment: {kind!r} is not one of {', '.join(AUGMENTATIONS)}")
    _check_images(x)
    _check_count("padding", padding)
    _check_count("max_shift", max_shift)
    if mode not in CROP_MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(CROP_MODES)}")
    parts = kind.split("+")
    if "flip" in parts:
        x = random_flip(x, generator)
    if "crop" in parts:
        x = random_crop(x, padding, mode, generator)
    if "shift" in parts:
        x = random_shift(x, max_shift, generator)
    return x
