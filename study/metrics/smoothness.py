"""Spatial smoothness of learned convolution filters (Fig. 7).

The normalised total variation of Ruderman et al. (2018), used by the paper's Fig. 7:
for one 2-D kernel slice ``w`` (one output and one input channel),

    TV(w) = (sum_{i,j} |w[i+1, j] - w[i, j]| + |w[i, j+1] - w[i, j]|) / sum_{i,j} |w[i, j]|

(differences inside the kernel, no wrap-around); lower is smoother, 0 is constant. A
layer's TV is the mean over its slices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def normalized_tv(weight: Tensor) -> Tensor:
    """Normalised TV of every ``(kH, kW)`` slice of ``weight`` ``(..., kH, kW)``; slices
    that are all zero get NaN.

    >>> normalized_tv(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    tensor(0.)
    >>> normalized_tv(torch.tensor([[1.0, -1.0], [1.0, -1.0]]))
    tensor(1.)
    """
    weight = weight.detach().double()
    vertical = (weight[..., 1:, :] - weight[..., :-1, :]).abs().sum((-2, -1))
    horizontal = (weight[..., :, 1:] - weight[..., :, :-1]).abs().sum((-2, -1))
    mass = weight.abs().sum((-2, -1))
    return ((vertical + horizontal) / mass).float()


def total_variation(model: nn.Module) -> dict[str, float]:
    """Mean normalised TV (Fig. 7) of every convolution with a kernel larger than 1x1,
    by layer name, in registration order (1x1 kernels have no spatial extent)."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.weight.shape[-2:].numel() > 1:
            values = normalized_tv(module.weight)
            out[name] = torch.nanmean(values).item()
    return out
