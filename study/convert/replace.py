"""Layer replacement: every strided pool and convolution of a model swapped for its
anti-aliased form (:func:`antialias`, :func:`convert_downsampling`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any, Literal

from torch import nn

from study.convert.placement import Plan, apply_plans, plan_after_activation
from study.convert.report import Change, ConversionReport, announce, short
from study.convert.tree import all_circular, is_downsampling, moved, padding_of, set_submodule
from study.layers import (
    APS_NORMS,
    BLUR_TYPES,
    PADDING_MODES,
    APSConv2d,
    BlurConv2d,
    Downsampling,
    Padding,
    check_choice,
)
from study.layers.choices import FilterLike
from study.layers.geometry import pair

AvgPoolMode = Literal["replace", "dense"]
StridedConv = Literal["after-activation", "after-conv"]
STRIDED_CONV: tuple[str, ...] = ("after-activation", "after-conv")


def antialias(
    model: nn.Module,
    filter: FilterLike | Downsampling = "binomial-5",
    padding: Padding | None = None,
    *,
    log: bool = True,
    **options: Any,
) -> nn.Module:
    """Blur every downsampling layer of ``model`` in place, and return it.

    ``filter``, ``padding`` and ``options`` are :func:`convert_downsampling`'s; ``log``:
    log the report of what changed at INFO level. A :class:`NothingConvertedWarning` is
    raised as a warning when nothing was replaced.
    """
    report = convert_downsampling(model, filter, padding, **options)
    announce(report, "antialias", log)
    return model


def convert_downsampling(
    model: nn.Module,
    filter: FilterLike | Downsampling = "binomial-5",
    padding: Padding | None = None,
    *,
    strided_conv: StridedConv = "after-activation",
    keep_stem: bool = False,
    avgpool: AvgPoolMode = "replace",
    exclude: Iterable[str] = (),
    downsample: str = "blur",
    aps_norm: str = "l2",
    adaptive_taps: int = 3,
    adaptive_groups: int = 2,
    ideal_cutoff: float | None = None,
    ideal_edge: str = "zero",
) -> ConversionReport:
    """Convert every strided pool and convolution of ``model`` in place (what
    :func:`antialias` does) and report what changed.

    Args:
        filter: any :mod:`study.filters` spec (learnable specs give each layer its own
            taps), or a whole :class:`~study.layers.Downsampling` (then ``downsample``
            and its parameters are not given).
        padding: the blurs' padding mode; ``None`` picks ``circular`` when every padded
            convolution of the model is circular (the paper's testbed), else ``reflect``
            (antialiased-cnns' default).
        strided_conv: where a strided convolution's blur goes. ``"after-activation"``
            (the paper's, Fig. 1 and Section 3): the convolution runs at stride 1 and
            the blur-pool follows the activation after it (``conv -> [norm] -> act``),
            wherever the traced graph shows that pattern, else ``"after-conv"`` as a
            reported fallback. ``"after-conv"``: :class:`BlurConv2d` blurs the
            convolution's output, before its norm and activation.
        keep_stem: leave the model's first convolution strided as it is
            (antialiased-cnns' choice for ResNets).
        avgpool: ``"replace"`` swaps an ``AvgPool2d(k, stride=k)`` for a blur-pool with
            ``filter`` (its box *is* a rect-k blur, Appendix A: ``rect-2`` gives back the
            original); ``"dense"`` keeps the box, pooled densely, and blurs after it.
        exclude: ``fnmatch`` patterns of module names to leave alone.
        downsample, aps_norm, adaptive_taps, adaptive_groups, ideal_cutoff, ideal_edge:
            the operator (:class:`~study.layers.Downsampling`, whose fields they are):
            ``"blur"``, ``"aps"``, ``"adaptive"`` or ``"ideal"`` and their parameters.
    """
    operator = _operator(
        filter, downsample, aps_norm, adaptive_taps, adaptive_groups, ideal_cutoff, ideal_edge
    )
    check_choice("avgpool", avgpool, ("replace", "dense"))
    check_choice("strided_conv", strided_conv, STRIDED_CONV)
    if not isinstance(keep_stem, bool):
        raise ValueError(f"keep_stem must be one of True, False; got {keep_stem!r}")
    if padding is None:
        padding = "circular" if all_circular(model) else "reflect"
    check_choice("padding", padding, PADDING_MODES)
    report = ConversionReport()
    layers = _layers_to_blur(model, tuple(exclude), keep_stem, report)
    convs = [name for name, module in layers if isinstance(module, nn.Conv2d)]
    plans: dict[str, Plan] = {}
    fallbacks: dict[str, str] = {}
    if strided_conv == "after-activation" and convs:
        plans, fallbacks = plan_after_activation(model, convs)
    adaptive: dict[str, nn.Module] = {}  # converted layer name -> its APS layer
    blurs = apply_plans(model, plans, operator, padding, report, adaptive)
    for name, module in layers:
        change = blurs.get(name) or _replace(model, name, module, operator, padding, avgpool)
        if isinstance(change, str):
            report.skipped.append((name, change))
            continue
        if isinstance(module, nn.Conv2d) and not change.placement:
            why = fallbacks.get(name)
            placement = f"after-conv (fallback: {why})" if why else "after-conv"
            change = Change(change.name, change.before, change.after, placement)
        report.replaced.append(change)
        if operator.kind == "aps" and name not in blurs:
            new = model.get_submodule(name)
            adaptive[name] = new.blur if isinstance(new, APSConv2d) else new
    for name, module in model.named_modules():
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            report.skipped.append((name, "adaptive pooling has no stride to blur"))
    report.links = _link_branches(adaptive)
    return report


def _operator(filter: FilterLike | Downsampling, kind: str, *fields: Any) -> Downsampling:
    """The operator: ``filter`` when it is a whole :class:`Downsampling` (then the flat
    fields must be left at their defaults), else one made of the flat fields."""
    if isinstance(filter, Downsampling):
        if Downsampling(kind, "delta", *fields) != Downsampling():  # not all at defaults
            raise ValueError("downsample: given beside a whole Downsampling; pass one or the other")
        return filter
    check_choice("aps_norm", fields[0], APS_NORMS)
    return Downsampling(kind, filter, *fields)


def _replace(
    model: nn.Module,
    name: str,
    module: nn.Module,
    operator: Downsampling,
    padding: Padding,
    avgpool: AvgPoolMode,
) -> Change | str:
    """Swap the layer at ``name`` for the operator's form of it; the change, or why not."""
    new = _blurred(module, operator, padding, avgpool)
    if isinstance(new, str):
        return new
    set_submodule(model, name, moved(new, module, model))
    return Change(name, short(module), short(new))


def _link_branches(adaptive: dict[str, nn.Module]) -> list[tuple[str, str]]:
    """Make each APS layer follow the closest earlier one whose parent strictly contains
    its own parent (a block's shortcut follows the block's main branch)."""
    links = []
    names = list(adaptive)
    for index, name in enumerate(names):
        parent = name.rpartition(".")[0]
        for leader in reversed(names[:index]):
            leader_parent = leader.rpartition(".")[0]
            if leader_parent and parent.startswith(f"{leader_parent}."):
                adaptive[name].follow(adaptive[leader])
                links.append((name, leader))
                break
    return links


def _layers_to_blur(
    model: nn.Module, patterns: tuple[str, ...], keep_stem: bool, report: ConversionReport
) -> list[tuple[str, nn.Module]]:
    """The strided layers to convert, in model order; the others go to ``report.skipped``."""
    stem = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    layers: list[tuple[str, nn.Module]] = []
    blurred_convs: list[str] = []
    for name, module in model.named_modules():
        if not is_downsampling(module) or any(name.startswith(f"{c}.") for c in blurred_convs):
            continue
        if isinstance(module, BlurConv2d):
            blurred_convs.append(name)
        reason = None
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            reason = "excluded by pattern"
        elif isinstance(module, (*BLUR_TYPES, BlurConv2d)):
            reason = "already anti-aliased"
        elif keep_stem and name == stem:
            reason = "stem convolution (keep_stem=True)"
        if reason:
            report.skipped.append((name, reason))
        else:
            layers.append((name, module))
    return layers


def _blurred(module: nn.Module, operator: Downsampling, padding: Padding, avgpool: AvgPoolMode):
    """The ``operator``'s replacement of a downsampling layer, or a string saying why
    not."""
    if isinstance(module, nn.Conv2d):
        return operator.conv(module, padding)
    kernel, stride = pair(module.kernel_size), pair(module.stride)
    pad, ceil_mode = padding_of(module), module.ceil_mode
    if isinstance(module, nn.MaxPool2d) and (
        pair(module.dilation) != (1, 1) or module.return_indices
    ):
        return "dilated or index-returning max-pool is not supported"
    if isinstance(module, nn.AvgPool2d) and module.divisor_override is not None:
        return "AvgPool2d with divisor_override is not supported"
    roundings = {
        _rounding_like(k, s, p, ceil_mode) for k, s, p in zip(kernel, stride, pad, strict=True)
    }
    if len(roundings) != 1 or None in roundings:
        geometry = f"kernel {kernel}, stride {stride}, padding {pad}"
        return f"its output size ({geometry}) is neither ceil(H/s) nor floor(H/s)"
    rounding = roundings.pop()
    if isinstance(module, nn.MaxPool2d):
        return operator.dense_pool("max", None, kernel, stride, padding, rounding)
    if avgpool == "replace" and kernel == stride and pad == (0, 0):
        return operator.pool(None, stride, padding, rounding)
    return operator.dense_pool("avg", None, kernel, stride, padding, rounding)


def _rounding_like(kernel: int, stride: int, pad: int, ceil_mode: bool) -> str | None:
    """Which of ceil(H/s) and floor(H/s) reproduces a pool's output size for every H."""
    sizes = range(max(1, kernel - 2 * pad), 8 * stride * kernel)
    torch_sizes = [_pool_output_size(n, kernel, stride, pad, ceil_mode) for n in sizes]
    for name, rule in (
        ("ceil", lambda n: -(-n // stride)),
        ("floor", lambda n: max(1, n // stride)),
    ):
        if all(rule(n) == t for n, t in zip(sizes, torch_sizes, strict=True)):
            return name
    return None


def _pool_output_size(n: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape`` in ATen)."""
    span = n + 2 * pad - (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= n + pad:
        out -= 1
    return out
