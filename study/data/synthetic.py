"""Images generated from a seed, needing no download.

:func:`pink_noise` gives unlabelled 1/f noise; :func:`shapes` gives a small labelled
classification task, ``"shapes"``, built so that shift invariance and aliasing are
measurable on a CPU in minutes.

What ``shapes`` is
------------------
Each image is one textured shape on a cluttered background. The 10 classes are the
5 shapes (disc, square, ring, cross, triangle) times 2 fine textures (stripes along
rows or along columns, see :data:`SHAPE_CLASSES`). Per image, drawn independently:

* the shape's centre, uniform over the whole image with **wrap-around** (a shape near
  an edge continues at the opposite edge), so every circular shift of an image is as
  likely as the image itself: the metrics' circular shifts (eq. 4) stay inside the
  training distribution;
* its size (radius 7-10 px at 32 px, scaled with ``size``) and colour;
* the texture's period (2.2-3.2 px: between the Nyquist limit of the full grid and
  well above that of a stride-2 grid), its phase, a small tilt and its contrast;
* the background: a random colour plus low-contrast pink (1/f) noise clutter.

Why aliasing matters here
-------------------------
The texture that separates half of the classes lives at frequencies that a stride-2
subsampling without a low-pass filter folds onto low frequencies, with a phase that
depends on where the shape sits relative to the sampling grid. A baseline network
therefore sees different subsampled signals for an image and its one-pixel shift and
its prediction can flip; a blur before subsampling (Zhang 2019) removes most of that
folded energy. Shapes are placed anywhere, so the network must also be invariant to
large shifts.

Limits
------
This is not natural-image data: one object per image, no occlusion, no lighting or
perspective, a hand-picked texture band, and classes that a small network separates
after a few epochs. Effects measured on it (accuracy, consistency, the gap between
filters) show that a pipeline behaves as the paper predicts; they are not estimates of
what happens on CIFAR or ImageNet.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

SHAPES = ("disc", "square", "ring", "cross", "triangle")
TEXTURES = ("rows", "columns")
#: ``class index -> (shape, texture)``; class ``k`` is shape ``k // 2``, texture ``k % 2``.
SHAPE_CLASSES = tuple((shape, texture) for shape in SHAPES for texture in TEXTURES)


def pink_noise(count: int, size: int = 32, seed: int = 0) -> Tensor:
    """``(count, 3, size, size)`` images of 1/f noise, each standardised per channel."""
    generator = torch.Generator().manual_seed(seed)
    return _pink(count, 3, size, generator)


def _pink(count: int, channels: int, size: int, generator: torch.Generator) -> Tensor:
    frequency = torch.fft.fftfreq(size)
    radius = (frequency[:, None] ** 2 + frequency[None, :] ** 2).sqrt().clamp(min=1 / size)
    spectrum = (
        torch.randn(count, channels, size, size, generator=generator, dtype=torch.cfloat) / radius
    )
    images = torch.fft.ifft2(spectrum).real
    return (images - images.mean((2, 3), keepdim=True)) / images.std((2, 3), keepdim=True)


def _stream(seed: int, split: int) -> torch.Generator:
    """An independent generator per ``(seed, split)`` (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([seed, split]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _render(count: int, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    if count == 0:
        return torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    labels = torch.randperm(count, generator=generator) % len(SHAPE_CLASSES)
    shape_id, texture_id = labels // len(TEXTURES), labels % len(TEXTURES)
    scale = size / 32

    # Offsets from the shape's centre on the torus: (N, size, size) each.
    grid = torch.arange(size, dtype=torch.float32)
    centre_y = _uniform(count, 0, size, generator).view(-1, 1, 1)
    centre_x = _uniform(count, 0, size, generator).view(-1, 1, 1)
    dy = torch.remainder(grid.view(1, -1, 1) - centre_y + size / 2, size) - size / 2
    dx = torch.remainder(grid.view(1, 1, -1) - centre_x + size / 2, size) - size / 2
    radius = _uniform(count, 7 * scale, 10 * scale, generator).view(-1, 1, 1)
    ay, ax = dy.abs() / radius, dx.abs() / radius
    distance = (ay**2 + ax**2).sqrt()
    masks = torch.stack(
        [
            distance <= 1,  # disc
            torch.maximum(ay, ax) <= 0.85,  # square
            (distance <= 1) & (distance >= 0.55),  # ring
            (torch.minimum(ay, ax) <= 0.3) & (torch.maximum(ay, ax) <= 1),  # cross
            (dy / radius >= -0.8) & (dy / radius <= 0.8) & (ax <= 0.6 * (dy / radius + 0.8)),
        ],
        1,
    )
    mask = masks[torch.arange(count), shape_id].unsqueeze(1).float()  # (N, 1, H, W)

    # Fine stripes along rows (varying with y) or columns (varying with x), slightly tilted.
    period = _uniform(count, 2.2, 3.2, generator).view(-1, 1, 1)
    tilt = _uniform(count, -0.2, 0.2, generator).view(-1, 1, 1)
    phase = _uniform(count, 0, 2 * math.pi, generator).view(-1, 1, 1)
    rows = (texture_id == 0).view(-1, 1, 1)
    across = torch.where(rows, dy + tilt * dx, dx + tilt * dy)
    texture = torch.cos(2 * math.pi * across / period + phase).unsqueeze(1)

    contrast = _uniform(count, 0.6, 1.0, generator).view(-1, 1, 1, 1)
    foreground = torch.rand(count, 3, 1, 1, generator=generator)
    background = torch.rand(count, 3, 1, 1, generator=generator)
    clutter = 0.08 * _pink(count, 3, size, generator)
    inside = foreground * (1 - 0.5 * contrast) + 0.5 * contrast * foreground * texture
    inside = inside + 0.5 * contrast * (1 - foreground) * texture.clamp(min=0)
    images = mask * inside + (1 - mask) * (background + clutter)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels.long()


def shapes(
    train: int = 5000, test: int = 1000, seed: int = 0, size: int = 32
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], list[str]]:
    """The procedural ``shapes`` dataset (see the module docstring):
    ``((train images, train labels), (test images, test labels), class names)``.

    Images are ``(N, 3, size, size)`` uint8, labels ``(N,)`` int64 in ``[0, 10)`` with
    every class equally often (up to one image). The same ``seed`` gives identical
    tensors; train and test come from independent generator streams.

    >>> (x, y), (tx, ty), names = shapes(20, 10, seed=1)
    >>> x.shape, x.dtype, y.shape, tx.shape, names[:3]
    (torch.Size([20, 3, 32, 32]), torch.uint8, torch.Size([20]), torch.Size([10, 3, 32, 32]), \
['disc-rows', 'disc-columns', 'square-rows'])
    """
    for name, value in (("train", train), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected a whole number >= 8, got {size!r}")
    names = [f"{shape}-{texture}" for shape, texture in SHAPE_CLASSES]
    train_split = _render(train, size, _stream(seed, 0))
    test_split = _render(test, size, _stream(seed, 1))
    return train_split, test_split, names
