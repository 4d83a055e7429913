"""Shifting images, and the classifier's probabilities at every circular shift (naive).

The all-shift tensor ``probs[n, dh, dw, c]`` is what every metric in
:mod:`study.metrics.scores` reads: the softmax probability of class ``c`` for image
``n`` circularly shifted by ``(dh, dw)`` (eq. 4), ``0 <= dh < H``, ``0 <= dw < W``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from study.layers import pad2d


def shift(x: Tensor, dh: int, dw: int) -> Tensor:
    """Circular shift, eq. (4): ``out[..., h, w] = x[..., (h - dh) % H, (w - dw) % W]``.

    >>> shift(torch.arange(4.0).view(1, 4), 0, 1)
    tensor([[3., 0., 1., 2.]])
    """
    return torch.roll(x, (dh, dw), (-2, -1))


def crop_shift(
    x: Tensor, dh: int, dw: int, padding: Literal["zeros", "reflect"] = "zeros"
) -> Tensor:
    """Non-circular shift: pixels shifted in at the border are zeros or mirrored, those
    shifted out are lost (the crop-with-padding protocol of antialiased-cnns' ImageNet
    evaluation). Same size as ``x``; ``|dh| < H`` and ``|dw| < W``.

    >>> crop_shift(torch.arange(1.0, 5.0).view(1, 4), 0, 1)
    tensor([[0., 1., 2., 3.]])
    """
    height, width = x.shape[-2:]
    if abs(dh) >= height or abs(dw) >= width:
        raise ValueError(f"shift: ({dh}, {dw}) must be smaller than the image ({height}x{width})")
    pad_h, pad_w = abs(dh), abs(dw)
    padded = pad2d(x, (pad_w, pad_w, pad_h, pad_h), padding)
    top, left = pad_h - dh, pad_w - dw
    return padded[..., top : top + height, left : left + width]


def check_images(images: Tensor, name: str = "images") -> None:
    """A one-line ``ValueError`` unless ``images`` is a float ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name}: expected a tensor of shape (N, C, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected floating-point pixels, got {images.dtype}")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, and restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has neither)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def naive_shift_probabilities(
    model: nn.Module, images: Tensor, batch_size: int = 256, progress: bool = False
) -> Tensor:
    """``(N, H, W, classes)`` softmax probabilities, one forward pass per shifted image.

    Shifted copies are batched ``batch_size`` at a time. Runs in eval mode on the
    model's device; the result is float32 on the CPU.
    """
    check_images(images)
    count, _, height, width = images.shape
    device = model_device(model)
    shifts = [(dh, dw) for dh in range(height) for dw in range(width)]
    out: Tensor | None = None
    per_pass = max(1, batch_size // count) if count < batch_size else 1
    with evaluating(model), torch.inference_mode():
        for start in tqdm(
            range(0, count, max(1, min(count, batch_size))),
            desc="naive",
            disable=None if progress else True,
        ):
            chunk = images[start : start + batch_size].to(device)
            for first in range(0, len(shifts), per_pass):
                group = shifts[first : first + per_pass]
                batch = torch.cat([shift(chunk, dh, dw) for dh, dw in group])
                probs = F.softmax(model(batch).float(), dim=1).cpu()
                if out is None:
                    out = torch.empty(count, height, width, probs.shape[1])
                for index, (dh, dw) in enumerate(group):
                    out[start : start + len(chunk), dh, dw] = probs[
                        index * len(chunk) : (index + 1) * len(chunk)
                    ]
    assert out is not None
    return out
