"""Per-layer feature distance maps: shift-equivariance through the network (Fig. 4).

For layer ``l`` with features ``F_l(X)`` of shape ``(C_l, H_l, W_l)`` upsampled (nearest
neighbour) to the input resolution as ``F~_l(X)``, and every circular shift ``(dh, dw)``
of the input, Section 4.2 measures the two sides of

- eq. (1), equivariance: ``d(Shift_{dh,dw}(F~_l(X)), F~_l(Shift_{dh,dw}(X)))``;
- eq. (2), invariance: ``d(F~_l(X), F~_l(Shift_{dh,dw}(X)))``;

with ``d`` the cosine distance between the two maps (each flattened to one vector per
image), averaged over images and divided by the mean distance between the features of
*different* images at that layer (image ``i`` against image ``i + 1``): 0 is perfectly
equivariant (invariant), 1 is as far as swapping the image.

Every subsampling layer appears twice, as in Fig. 4: ``name (dense)``, the layer
evaluated at stride 1 (circular padding), and ``name (ds)``, its subsampled output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from study.layers import BLUR_TYPES, BlurConv2d
from study.metrics.polyphase import POOLS, dense_forward, is_subsampler
from study.metrics.shifts import check_images, evaluating, model_device, shift

_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)


def probed_layers(model: nn.Module) -> list[str]:
    """Names of the layers that :func:`feature_distance_maps` probes by default: every
    convolution, blur, pooling and linear layer, in registration order (a
    :class:`BlurConv2d` is probed through its ``blur``)."""
    kinds = (nn.Conv2d, *BLUR_TYPES, *POOLS, *_GLOBAL)
    return [
        name
        for name, module in model.named_modules()
        if name and isinstance(module, kinds) and not isinstance(module, BlurConv2d)
    ]


class _Recorder:
    """Forward hooks that collect ``(label, features)`` of the probed layers, in call
    order; a subsampling layer adds its dense half first."""

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        unknown = [name for name in layers if name not in modules]
        if unknown:
            raise ValueError(f"layers: {unknown[0]!r} is not a submodule of the model")
        self.model = model
        self.modules = {name: modules[name] for name in layers}
        self.records: list[tuple[str, Tensor]] = []
        self.calls: dict[str, int] = {}

    def __call__(self, images: Tensor) -> list[tuple[str, Tensor]]:
        self.records, self.calls = [], {}
        handles = [
            module.register_forward_hook(self._hook(name)) for name, module in self.modules.items()
        ]
        try:
            logits = self.model(images)
        finally:
            for handle in handles:
                handle.remove()
        return [("pixels", images), *self.records, ("softmax", F.softmax(logits.float(), -1))]

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            self.calls[name] = calls = self.calls.get(name, 0) + 1
            label = name if calls == 1 else f"{name}#{calls}"  # a module run more than once
            if is_subsampler(module):
                self.records.append((f"{label} (dense)", dense_forward(module, inputs[0])))
                label = f"{label} (ds)"
            self.records.append((label, output))

        return record


def _upsampled(features: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, ...)`` features as ``(N, C, H, W)`` at the input resolution (nearest)."""
    if features.dim() == 2:  # (N, C): a 1 x 1 map
        features = features[..., None, None]
    return F.interpolate(features.float(), size=size, mode="nearest")


def _unit(features: Tensor) -> Tensor:
    """``(N, D)``: each image's features flattened and scaled to unit length, in float64
    (distances are divided by the between-image distance, which can be tiny)."""
    flat = features.flatten(1).double()
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _cosine_distance(unit: Tensor, other_unit: Tensor) -> Tensor:
    """``(N,)`` cosine distance between the unit vectors ``unit[n]`` and ``other_unit[n]``."""
    return 1 - (unit * other_unit.flatten(1)).sum(1)


def feature_distance_maps(
    model: nn.Module,
    images: Tensor,
    max_shift: int | None = None,
    layers: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Fig. 4's maps for every probed layer and every shift ``0 <= dh, dw < max_shift``.

    ``images``: ``(N, C, H, W)`` with ``N >= 2`` (the normalisation compares different
    images). ``max_shift`` defaults to all ``H x W`` shifts; ``layers`` to
    :func:`probed_layers`. Runs ``max_shift**2`` forward passes of the batch, in eval
    mode. Returns:

    - ``layers``: ``L`` labels, from ``pixels`` to ``softmax``;
    - ``resolution``: ``L`` ``(H_l, W_l)`` sizes (``(1, 1)`` for vectors);
    - ``equivariance``, ``invariance``: ``(L, S, S)`` normalised distances, eq. (1), (2);
    - ``between_images``: ``(L,)`` the raw mean distance between different images.
    """
    check_images(images)
    count, _, height, width = images.shape
    if count < 2:
        raise ValueError("images: need at least 2 images, to normalise by their distance")
    size = (height, width)
    span = height if max_shift is None else max_shift
    if not 1 <= span <= min(height, width):
        raise ValueError(f"max_shift: {span} must lie in [1, {min(height, width)}]")
    record = _Recorder(model, probed_layers(model) if layers is None else layers)
    device = model_device(model)
    images = images.to(device)
    with evaluating(model), torch.inference_mode():
        raw = record(images)
        resolution = [_resolution(f) for _, f in raw]
        reference = [_unit(_upsampled(f, size)) for _, f in raw]
        labels = [label for label, _ in raw]
        del raw
        between = torch.stack([_cosine_distance(f, f.roll(1, 0)).mean() for f in reference])
        equivariance = torch.zeros(len(reference), span, span, dtype=torch.float64)
        invariance = torch.zeros(len(reference), span, span, dtype=torch.float64)
        grid = [(dh, dw) for dh in range(span) for dw in range(span)]
        for dh, dw in tqdm(grid, desc="feature maps", disable=None if progress else True):
            shifted = record(shift(images, dh, dw))
            for index, (base, (_, moved)) in enumerate(zip(reference, shifted, strict=True)):
                moved = _unit(_upsampled(moved, size)).view(len(images), -1, *size)
                # d(Shift(a), b) = d(a, Shift^-1(b)): shift the new map back instead
                back = shift(moved, -dh, -dw)
                equivariance[index, dh, dw] = _cosine_distance(base, back).mean()
                invariance[index, dh, dw] = _cosine_distance(base, moved).mean()
    between = between.cpu()
    scale = between.clamp_min(1e-12)[:, None, None]
    return {
        "layers": labels,
        "resolution": resolution,
        "equivariance": (equivariance / scale).float(),
        "invariance": (invariance / scale).float(),
        "between_images": between,
    }


def _resolution(features: Tensor) -> tuple[int, int]:
    return (1, 1) if features.dim() == 2 else tuple(features.shape[-2:])
