"""Images generated from a seed, needing no download."""

from __future__ import annotations

import torch
from torch import Tensor


def pink_noise(count: int, size: int = 32, seed: int = 0) -> Tensor:
    """``(count, 3, size, size)`` images of 1/f noise, each standardised per channel."""
    generator = torch.Generator().manual_seed(seed)
    frequency = torch.fft.fftfreq(size)
    radius = (frequency[:, None] ** 2 + frequency[None, :] ** 2).sqrt().clamp(min=1 / size)
    spectrum = torch.randn(count, 3, size, size, generator=generator, dtype=torch.cfloat) / radius
    images = torch.fft.ifft2(spectrum).real
    return (images - images.mean((2, 3), keepdim=True)) / images.std((2, 3), keepdim=True)
