"""Exact probabilities at every circular shift, for a fraction of the naive cost.

With circular padding, a circular shift commutes with every layer except subsampling.
Subsampling by ``s`` a map shifted by ``d = r + s*q`` (``0 <= r < s``) equals the
subsampled map of the shift by ``r``, shifted by ``q``:
``Down_s(Shift_d(y)) = Shift_q(Down_s(Shift_r(y)))``. So each stride-``s`` layer only
needs its ``s*s`` phases ``Down_s(Shift_r(y))``, each computed once and passed on as a
batch, and the shift ``q`` is left to the next subsampling. Every layer then runs on as
many pixels as it would on the full-resolution image, instead of ``H*W`` times that.

The network is run once per batch with each subsampling layer swapped for its *phase
expansion*: the layer evaluated densely (stride 1), then every phase gathered into the
batch dimension. At the deepest subsampling level every remaining shift of its input
is expanded, so anything after it (a position-dependent head included) sees each
shift exactly. The result is reordered into ``probs[n, dh, dw, class]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from study.layers import (
    APS_TYPES,
    BLUR_TYPES,
    IDEAL_TYPES,
    INPUT_DEPENDENT_TYPES,
    BlurAvgPool2d,
    BlurConv2d,
    BlurPool2d,
    MaxBlurPool2d,
    avg_blur_pool2d,
    blur_pool2d,
    max_blur_pool2d,
    pad2d,
)
from study.layers.geometry import pair
from study.layers.modules import CircularAvgPool2d, CircularMaxPool2d
from study.metrics.shifts import check_images, evaluating, model_device, shift

logger = logging.getLogger(__name__)

POOLS = (nn.MaxPool2d, nn.AvgPool2d)

# Layers that act on each pixel (or each image as a whole) and so commute with shifts.
_POINTWISE = (
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.LayerNorm,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.Flatten,
    nn.Linear,
    nn.Softmax,
    nn.LogSoftmax,
)


class PolyphaseError(ValueError):
    """The model cannot be evaluated by phases; the message says which layer and why."""


def input_dependent_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s layers whose subsampling depends on the input: adaptive
    polyphase sampling (:mod:`study.layers.aps`, the phase) and content-aware filters
    (:mod:`study.layers.adaptive`, the kernels). The fixed-phase expansion here treats
    only fixed filters and fixed phases, so it is not exact for them."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, INPUT_DEPENDENT_TYPES)
    ]


def is_subsampler(module: nn.Module) -> bool:
    """Does this module subsample (stride > 1) by itself? A :class:`BlurConv2d`'s
    convolution runs at stride 1; its ``blur`` child is the subsampler."""
    if isinstance(module, BlurConv2d):
        return False
    if isinstance(module, (*BLUR_TYPES, nn.Conv2d, *POOLS)):
        return pair(module.stride) != (1, 1)
    return False


def _kind(module: nn.Module) -> str:
    return "APS picks its phase" if isinstance(module, APS_TYPES) else "predicted kernels"


def dense_forward(module: nn.Module, x: Tensor) -> Tensor:
    """The map a subsampling layer subsamples: the layer at stride 1, circularly padded
    where it pads, so that its strided output is ``dense[..., ::s, ::s]``."""
    if isinstance(module, IDEAL_TYPES):
        return module.dense(x)
    if isinstance(module, MaxBlurPool2d | BlurAvgPool2d):
        function = max_blur_pool2d if isinstance(module, MaxBlurPool2d) else avg_blur_pool2d
        return function(
            x, module.lowpass(), module.kernel_size, 1, module.padding, module.order, "ceil"
        )
    if isinstance(module, BlurPool2d):
        return blur_pool2d(x, module.lowpass(), 1, module.padding)
    if isinstance(module, nn.Conv2d):
        padding = module.padding
        if module.padding_mode != "zeros":
            x = pad2d(x, tuple(module._reversed_padding_repeated_twice), module.padding_mode)
            padding = 0
        return F.conv2d(x, module.weight, module.bias, 1, padding, module.dilation, module.groups)
    if isinstance(module, POOLS):
        (k_h, k_w), (p_h, p_w) = pair(module.kernel_size), pair(module.padding)
        x = pad2d(x, (p_w, k_w - 1 - p_w, p_h, k_h - 1 - p_h), "circular")
        if isinstance(module, nn.MaxPool2d):
            return F.max_pool2d(x, (k_h, k_w), 1, 0, module.dilation)
        return F.avg_pool2d(x, (k_h, k_w), 1)
    raise TypeError(f"{type(module).__name__} is not a subsampling layer")


def structural_blockers(model: nn.Module) -> list[str]:
    """Reasons, layer by layer, why shifts would not commute with ``model``'s layers
    (other than by subsampling); empty when every layer is known to commute."""
    reasons = []
    for name, module in model.named_modules():
        label = name or type(module).__name__
        if isinstance(module, APS_TYPES):
            reasons.append(
                f"{label}: adaptive polyphase sampling (APS) picks its phase per image, "
                "and phase expansion is exact only for fixed-phase subsampling"
            )
        elif isinstance(module, INPUT_DEPENDENT_TYPES):
            reasons.append(
                f"{label}: a content-aware filter predicts its kernels from the input, "
                "and phase expansion treats only fixed filters"
            )
        elif isinstance(module, IDEAL_TYPES):  # the FFT is circular whatever the padding
            kernel = pair(getattr(module, "kernel_size", 1))
            if module.padding != "circular" and kernel != (1, 1):
                reasons.append(f"{label}: dense pool pads with {module.padding}, not circular")
        elif isinstance(module, nn.Conv2d):
            (k_h, k_w), (d_h, d_w) = pair(module.kernel_size), pair(module.dilation)
            if isinstance(module.padding, str):
                pad = (
                    (d_h * (k_h - 1) // 2, d_w * (k_w - 1) // 2)
                    if module.padding == "same"
                    else (0, 0)
                )
            else:
                pad = pair(module.padding)
            if (2 * pad[0], 2 * pad[1]) != (d_h * (k_h - 1), d_w * (k_w - 1)):
                reasons.append(f"{label}: convolution does not keep the map size (padding {pad})")
            elif pad != (0, 0) and module.padding_mode != "circular":
                reasons.append(
                    f"{label}: convolution pads with {module.padding_mode}, not circular"
                )
        elif isinstance(module, BLUR_TYPES):
            if module.padding != "circular" and module.lowpass().numel() > 1:
                reasons.append(f"{label}: blur pads with {module.padding}, not circular")
        elif isinstance(module, POOLS):
            (k_h, k_w), stride = pair(module.kernel_size), pair(module.stride)
            circular = isinstance(module, CircularMaxPool2d | CircularAvgPool2d)
            if not circular and (
                pair(module.padding) != (0, 0) or k_h > stride[0] or k_w > stride[1]
            ):
                reasons.append(f"{label}: pooling pads or overlaps without wrapping around")
        elif isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) and (
            pair(module.output_size) != (1, 1)
        ):
            reasons.append(f"{label}: adaptive pooling to {module.output_size} is not global")
    return reasons


@dataclass(frozen=True)
class _Level:
    size: tuple[int, int]  # input map size
    stride: tuple[int, int]
    digits: tuple[int, int]  # phases per axis: the stride, or every shift at the last level


def _levels(
    model: nn.Module, image: Tensor, exact_tail: bool
) -> tuple[list[_Level], dict[nn.Module, _Level]]:
    """Find the subsampling levels by a dry run on one image.

    The deepest level expands every shift of its input when ``exact_tail`` (exact for
    any layers after it), else only its stride's phases, which is exact when the rest
    of the network is shift-invariant (global pooling): the spot check decides.
    """
    seen: dict[nn.Module, tuple[tuple[int, int], tuple[int, int]]] = {}
    names = {module: name for name, module in model.named_modules()}

    def record(module, inputs, output):
        size = tuple(inputs[0].shape[-2:])
        if module in seen and seen[module][0] != size:
            raise PolyphaseError(
                f"{names[module]}: runs at two resolutions ({seen[module][0]}, {size})"
            )
        stride = pair(module.stride)
        if size[0] % stride[0] or size[1] % stride[1]:
            raise PolyphaseError(
                f"{names[module]}: stride {stride} does not divide its input {size}"
            )
        if tuple(output.shape[-2:]) != (size[0] // stride[0], size[1] // stride[1]):
            raise PolyphaseError(
                f"{names[module]}: output {tuple(output.shape[-2:])} is not its input / stride"
            )
        seen[module] = (size, stride)

    subsamplers = [m for m in model.modules() if is_subsampler(m)]
    handles = [m.register_forward_hook(record) for m in subsamplers]
    try:
        model(image)
    finally:
        for handle in handles:
            handle.remove()
    by_size: dict[tuple[int, int], tuple[int, int]] = {}
    for module, (size, stride) in seen.items():
        if by_size.setdefault(size, stride) != stride:
            raise PolyphaseError(
                f"{names[module]}: stride {stride} differs from others at resolution {size}"
            )
    sizes = sorted(by_size, reverse=True)
    levels, expected = [], tuple(image.shape[-2:])
    for index, size in enumerate(sizes):
        if size != expected:
            raise PolyphaseError(f"subsampling input {size} follows no subsampling of {expected}")
        stride = by_size[size]
        digits = size if exact_tail and index == len(sizes) - 1 else stride
        levels.append(_Level(size, stride, digits))
        expected = (size[0] // stride[0], size[1] // stride[1])
    level_of = {module: levels[sizes.index(size)] for module, (size, _) in seen.items()}
    return levels, level_of


def _phases(dense: Tensor, level: _Level) -> Tensor:
    """``(B, C, h, w) -> (B * Rh * Rw, C, h/s, w/s)``: phase ``(rh, rw)`` is
    ``Shift_(rh, rw)(dense)[..., ::s, ::s]``, gathered in one indexing pass."""
    batch, channels, height, width = dense.shape
    (s_h, s_w), (r_h, r_w) = level.stride, level.digits
    device = dense.device
    rows = (
        s_h * torch.arange(height // s_h, device=device)[None]
        - torch.arange(r_h, device=device)[:, None]
    ) % height
    cols = (
        s_w * torch.arange(width // s_w, device=device)[None]
        - torch.arange(r_w, device=device)[:, None]
    ) % width
    out = dense[:, :, rows][..., cols]  # (B, C, Rh, h/s, Rw, w/s)
    return out.permute(0, 2, 4, 1, 3, 5).reshape(
        batch * r_h * r_w, channels, height // s_h, width // s_w
    )


@contextmanager
def _expanded(level_of: dict[nn.Module, _Level]) -> Iterator[None]:
    """Swap each subsampling layer's forward for its phase expansion, for the block."""
    for module, level in level_of.items():
        module.forward = _expansion(module, level)  # instance attribute shadows the method
    try:
        yield
    finally:
        for module in level_of:
            del module.forward


def _expansion(module: nn.Module, level: _Level) -> Callable[[Tensor], Tensor]:
    return lambda x: _phases(dense_forward(module, x), level)


def polyphase_logits(model: nn.Module, images: Tensor, levels, level_of) -> Tensor:
    """``(N, H, W, classes)`` logits of every circular shift of ``images`` (eval mode)."""
    count, _, height, width = images.shape
    if not levels:  # nothing subsamples: one pass per shift is all there is
        raise PolyphaseError("the model has no subsampling layer, so phases save nothing")
    with _expanded(level_of):
        logits = model(images)
    shape, depth = [count], len(levels)
    for level in levels:
        shape += list(level.digits)
    logits = logits.view(*shape, -1)
    # dh = r1 + s1*r2 + s1*s2*r3 + ...: the deepest level is the most significant digit.
    rows = [2 * i + 1 for i in reversed(range(depth))]
    cols = [2 * i + 2 for i in reversed(range(depth))]
    span_h = math.prod(level.digits[0] for level in levels)
    span_w = math.prod(level.digits[1] for level in levels)
    logits = logits.permute(0, *rows, *cols, 2 * depth + 1).reshape(count, span_h, span_w, -1)
    # Shifts beyond the expanded phases leave the output unchanged (shift-invariant tail).
    return logits.repeat(1, height // span_h, width // span_w, 1)


def polyphase_shift_probabilities(
    model: nn.Module,
    images: Tensor,
    batch_size: int = 16,
    progress: bool = False,
    check: bool = True,
) -> Tensor:
    """``(N, H, W, classes)`` softmax probabilities at every circular shift, by phases.

    Raises :class:`PolyphaseError` when the model does not allow it: a layer that does
    not commute with circular shifts, a stride that does not divide its input, or (with
    ``check``) a mismatch with naive evaluation on the first image at a few shifts.
    """
    check_images(images)
    adaptive = input_dependent_layers(model)
    if adaptive:
        raise PolyphaseError(
            f"polyphase evaluation is exact only for fixed filters and fixed-phase "
            f"subsampling, and {adaptive[0]} (one of {len(adaptive)} input-dependent "
            f"layers: {_kind(model.get_submodule(adaptive[0]))}) depends on the image; "
            "use method='naive' (or 'auto', which falls back to it)"
        )
    blockers = structural_blockers(model)
    if blockers:
        raise PolyphaseError(
            f"polyphase needs every layer to commute with circular shifts; {blockers[0]}"
        )
    device = model_device(model)
    out = []
    with evaluating(model), torch.inference_mode():
        levels, level_of = _plan(model, images[:1].to(device), check)
        for start in tqdm(
            range(0, len(images), batch_size), desc="polyphase", disable=None if progress else True
        ):
            chunk = images[start : start + batch_size].to(device)
            logits = polyphase_logits(model, chunk, levels, level_of)
            out.append(F.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)


def _plan(model: nn.Module, image: Tensor, check: bool):
    """The cheapest exact expansion: stride phases only if the tail is shift-invariant
    (checked against plain passes), else every shift at the deepest level."""
    levels, level_of = _levels(model, image, exact_tail=False)
    if not check:
        return _levels(model, image, exact_tail=True)
    try:
        _spot_check(model, image, levels, level_of)
        return levels, level_of
    except PolyphaseError:
        levels, level_of = _levels(model, image, exact_tail=True)
        _spot_check(model, image, levels, level_of)
        return levels, level_of


def _spot_check(
    model: nn.Module, image: Tensor, levels, level_of, shifts: int = 6, tolerance: float = 1e-4
) -> None:
    """Compare with plain forward passes at a few shifts; raise on any mismatch."""
    height, width = image.shape[-2:]
    generator = torch.Generator().manual_seed(0)
    picks = [(0, 0), (1, 1), (height - 1, width - 1)]
    picks += [
        tuple(torch.randint(0, n, (1,), generator=generator).item() for n in (height, width))
        for _ in range(shifts)
    ]
    probs = F.softmax(polyphase_logits(model, image, levels, level_of).float(), -1)[0]
    batch = torch.cat([shift(image, dh, dw) for dh, dw in picks])
    reference = F.softmax(model(batch).float(), -1)
    for (dh, dw), expected in zip(picks, reference, strict=True):
        error = (probs[dh, dw] - expected).abs().max().item()
        if error > tolerance:
            raise PolyphaseError(
                f"polyphase differs from a plain forward pass by {error:.2g} "
                f"at shift ({dh}, {dw}); some layer does not commute with circular shifts"
            )
