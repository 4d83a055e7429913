"""Datasets as uint8 tensors: CIFAR in torchvision's format and image-folder trees
(:mod:`study.data.sources`), normalised for a network by :func:`to_float`."""

from __future__ import annotations

import torch
from torch import Tensor

from study.data.augment import (
    AUGMENTATIONS,
    augment,
    circular_offsets,
    crop_at,
    random_circular_shifts,
    random_crop,
    random_flip,
    random_shift,
    shift_at,
)
from study.data.sources import DataSourceError, cache_dir, describe_source, load_split
from study.data.synthetic import pink_noise, shapes

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


__all__ = [
    "AUGMENTATIONS",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DataSourceError",
    "augment",
    "cache_dir",
    "circular_offsets",
    "crop_at",
    "describe_source",
    "load_split",
    "pink_noise",
    "random_circular_shifts",
    "random_crop",
    "random_flip",
    "random_shift",
    "shapes",
    "shift_at",
    "to_float",
]
