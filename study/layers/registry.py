"""The blur layer kinds by name (:data:`LAYERS`, timm's ``create_aa`` pattern), the
layer type groups, and finding blur layers and filter parameters in a model."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn

from study.layers.adaptive import CONTENT_AWARE_TYPES
from study.layers.aps import APS_TYPES, APSPool2d, AvgAPSPool2d, MaxAPSPool2d
from study.layers.choices import FilterLike, Padding, check_choice
from study.layers.modules import BlurAvgPool2d, BlurPool2d, MaxBlurPool2d
from study.layers.taps import LearnableCutoff, LearnableTaps

LAYERS: dict[str, Callable[..., nn.Module]] = {
    "blurpool": BlurPool2d,
    "maxblurpool": MaxBlurPool2d,
    "avgblurpool": BlurAvgPool2d,
    "apspool": APSPool2d,
    "maxapspool": MaxAPSPool2d,
    "avgapspool": AvgAPSPool2d,
}
"""Blur layer kinds by name; each takes ``(channels, filter, stride=..., padding=...)``
(the ``aps`` kinds also ``norm=...``, see :mod:`study.layers.aps`). The ideal and
content-aware layers take their own arguments instead of a filter: make them with
:class:`Downsampling`."""

BLUR_TYPES = (BlurPool2d, MaxBlurPool2d, BlurAvgPool2d)
"""The blur layers; the APS, ideal and content-aware layers subclass them, so they count
too."""

INPUT_DEPENDENT_TYPES = (*APS_TYPES, *CONTENT_AWARE_TYPES)
"""Layers whose subsampling depends on the input (the phase, the kernels): shifts do
not commute with them as with a fixed filter and a fixed phase."""


def create_aa(
    kind: str,
    channels: int,
    filter: FilterLike = "binomial-5",
    stride: int = 2,
    padding: Padding = "circular",
    **kwargs,
) -> nn.Module:
    """A blur layer of a registered ``kind`` (see :data:`LAYERS`).

    >>> create_aa("maxblurpool", 64, "binomial-3")
    MaxBlurPool2d(
      64, filter=binomial-3, stride=2, padding=circular, kernel_size=2, order=pool-blur
      (lowpass): FixedTaps(binomial-3)
    )
    """
    check_choice("layer kind", kind, tuple(LAYERS))
    return LAYERS[kind](channels, filter, stride=stride, padding=padding, **kwargs)


def blur_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of every blur in ``model``: the blur layers and the blurs
    inside :class:`BlurConv2d`."""
    for name, module in model.named_modules():
        if isinstance(module, BLUR_TYPES):
            yield name, module


def filter_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The trainable filter parameters (learnable taps and cutoffs), to give them their
    own optimiser group (learning rate, no weight decay)."""
    for name, module in model.named_modules():
        if isinstance(module, LearnableTaps | LearnableCutoff):
            for parameter_name, parameter in module.named_parameters():
                yield f"{name}.{parameter_name}" if name else parameter_name, parameter
