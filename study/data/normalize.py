"""Images as a network reads them: uint8 -> float, standardised per channel."""

from __future__ import annotations

import torch
from torch import Tensor

# Per-channel statistics of the CIFAR-10 training set (0-1 pixel scale).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def to_float(
    images: Tensor, mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD
) -> Tensor:
    """``(N, C, H, W)`` uint8 -> float32, scaled to [0, 1] and standardised per channel.

    >>> to_float(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), (0.5,) * 3, (0.5,) * 3)
    tensor([[[[1.]],
    <BLANKLINE>
             [[1.]],
    <BLANKLINE>
             [[1.]]]])
    """
    scale = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    shift = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - shift) / scale
