"""Model surgery: make any torch model's downsampling anti-aliased, or its padding circular.

:func:`antialias` rewrites every strided ``MaxPool2d``, ``AvgPool2d`` and ``Conv2d`` into
its blurred form (Section 3.2; Fig. 1 bottom: pool or convolve densely, then blur and
subsample) and keeps parameter names, so the original ``state_dict`` loads into the
converted model. :func:`circular` switches a model to circular padding, the paper's
testbed (Section 4.1). Both say what they changed, and warn when they changed nothing.

>>> import torchvision
>>> model = antialias(torchvision.models.vgg11(), "binomial-5", log=False)
>>> type(model.features[2]).__name__, str(model.features[2].spec)
('MaxBlurPool2d', 'binomial-5')
"""

from __future__ import annotations

import fnmatch
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from study.filters import FilterSpec, parse
from study.layers import (
    BLUR_TYPES,
    PADDING_MODES,
    BlurAvgPool2d,
    BlurConv2d,
    BlurPool2d,
    CircularAvgPool2d,
    CircularMaxPool2d,
    MaxBlurPool2d,
    Padding,
    check_choice,
)
from study.layers.modules import FilterLike

logger = logging.getLogger(__name__)

AvgPoolMode = Literal["replace", "dense"]


class NothingConvertedWarning(UserWarning):
    """A conversion found nothing to change in the model."""


@dataclass(frozen=True)
class Change:
    """One module swapped: its dotted name and a short description before and after."""

    name: str
    before: str
    after: str


@dataclass
class ConversionReport:
    """What a conversion replaced, and what it left alone and why."""

    replaced: list[Change] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of replacements per original layer type, e.g. ``{"MaxPool2d": 5}``."""
        out: dict[str, int] = {}
        for change in self.replaced:
            kind = change.before.split("(")[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def __str__(self) -> str:
        if not self.replaced:
            head = "replaced nothing"
        else:
            kinds = ", ".join(f"{n} {k}" for k, n in self.counts().items())
            head = f"replaced {len(self.replaced)} layers ({kinds})"
        lines = [head]
        lines += [f"  {c.name}: {c.before} -> {c.after}" for c in self.replaced]
        lines += [f"  left {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


def antialias(
    model: nn.Module,
    filter: FilterLike = "binomial-5",
    padding: Padding | None = None,
    *,
    keep_stem: bool = False,
    avgpool: AvgPoolMode = "replace",
    exclude: Iterable[str] = (),
    log: bool = True,
) -> nn.Module:
    """Blur every downsampling layer of ``model`` in place, and return it.

    Args:
        filter: any :mod:`study.filters` spec; learnable specs give each layer its own taps.
        padding: the blurs' padding mode; ``None`` picks ``circular`` when every padded
            convolution of the model is circular (the paper's testbed), else ``reflect``
            (antialiased-cnns' default).
        keep_stem: leave the model's first convolution strided as it is
            (antialiased-cnns' choice for ResNets).
        avgpool: ``"replace"`` swaps an ``AvgPool2d(k, stride=k)`` for a blur-pool with
            ``filter`` (its box *is* a rect-k blur, Appendix A: ``rect-2`` gives back the
            original); ``"dense"`` keeps the box, pooled densely, and blurs after it.
        exclude: ``fnmatch`` patterns of module names to leave alone.
        log: log the report at INFO level.

    The report of what changed is :func:`convert_downsampling`'s; a
    :class:`NothingConvertedWarning` is raised as a warning when nothing was replaced.
    """
    report = convert_downsampling(
        model, filter, padding, keep_stem=keep_stem, avgpool=avgpool, exclude=exclude
    )
    _announce(report, "antialias", log)
    return model


def convert_downsampling(
    model: nn.Module,
    filter: FilterLike = "binomial-5",
    padding: Padding | None = None,
    *,
    keep_stem: bool = False,
    avgpool: AvgPoolMode = "replace",
    exclude: Iterable[str] = (),
) -> ConversionReport:
    """:func:`antialias`'s work, returning the :class:`ConversionReport`."""
    spec = parse(filter)
    check_choice("avgpool", avgpool, ("replace", "dense"))
    if padding is None:
        padding = "circular" if _all_circular(model) else "reflect"
    check_choice("padding", padding, PADDING_MODES)
    patterns = tuple(exclude)
    stem = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    report = ConversionReport()
    blurred_convs: list[str] = []
    for name, module in list(model.named_modules()):
        if not _is_downsampling(module) or any(name.startswith(f"{c}.") for c in blurred_convs):
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
        new = None if reason else _blurred(module, spec, padding, avgpool)
        if isinstance(new, str):
            reason, new = new, None
        if new is None:
            report.skipped.append((name, reason or "not a supported downsampling layer"))
            continue
        _set_submodule(model, name, new)
        report.replaced.append(Change(name, _short(module), _short(new)))
    for name, module in model.named_modules():
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            report.skipped.append((name, "adaptive pooling has no stride to blur"))
    return report


def circular(model: nn.Module, *, log: bool = True) -> nn.Module:
    """Switch every convolution, blur, pool and pad of ``model`` to circular padding, in
    place (Section 4.1: kernels wrap around the edge, so circular shifts commute with
    every layer but subsampling). Returns the model."""
    report = ConversionReport()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and module.padding_mode != "circular":
            before = _short(module)
            module.padding_mode = "circular"
            report.replaced.append(Change(name, before, _short(module)))
        elif isinstance(module, BLUR_TYPES) and module.padding != "circular":
            before = _short(module)
            module.padding = "circular"
            report.replaced.append(Change(name, before, _short(module)))
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and _padding(module) != (0, 0):
            if isinstance(module, CircularMaxPool2d | CircularAvgPool2d):
                continue
            wrapped = _circular_pool(module)
            _set_submodule(model, name, wrapped)
            report.replaced.append(Change(name, _short(module), type(wrapped).__name__))
        elif isinstance(
            module, nn.ZeroPad2d | nn.ConstantPad2d | nn.ReflectionPad2d | nn.ReplicationPad2d
        ):
            _set_submodule(model, name, nn.CircularPad2d(module.padding))
            report.replaced.append(Change(name, _short(module), "CircularPad2d"))
    _announce(report, "circular", log)
    return model


def _circular_pool(pool: nn.MaxPool2d | nn.AvgPool2d) -> nn.Module:
    """The same pool, padding circularly."""
    if isinstance(pool, nn.MaxPool2d):
        return CircularMaxPool2d(
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.dilation,
            pool.return_indices,
            pool.ceil_mode,
        )
    return CircularAvgPool2d(
        pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, True, pool.divisor_override
    )


def _blurred(module: nn.Module, spec: FilterSpec, padding: Padding, avgpool: AvgPoolMode):
    """The blurred replacement of a downsampling layer, or a string saying why not."""
    if isinstance(module, nn.Conv2d):
        return BlurConv2d.from_conv(module, spec, padding)
    kernel, stride = _pair(module.kernel_size), _pair(module.stride)
    pad, ceil_mode = _padding(module), module.ceil_mode
    if isinstance(module, nn.MaxPool2d) and (
        _pair(module.dilation) != (1, 1) or module.return_indices
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
        return MaxBlurPool2d(None, spec, kernel, stride, padding, rounding=rounding)
    if avgpool == "replace" and kernel == stride and pad == (0, 0):
        return BlurPool2d(None, spec, stride, padding, rounding=rounding)
    return BlurAvgPool2d(None, spec, kernel, stride, padding, rounding=rounding)


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


def _is_downsampling(module: nn.Module) -> bool:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, *BLUR_TYPES)):
        stride = module.stride if module.stride is not None else module.kernel_size
        return _pair(stride) != (1, 1)
    return False


def _all_circular(model: nn.Module) -> bool:
    padded = [m for m in model.modules() if isinstance(m, nn.Conv2d) and _padding(m) != (0, 0)]
    return bool(padded) and all(m.padding_mode == "circular" for m in padded)


def _padding(module: nn.Module) -> tuple[int, int]:
    padding = module.padding
    if isinstance(padding, str):
        return (0, 0) if padding == "valid" else (-1, -1)
    return _pair(padding)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _short(module: nn.Module) -> str:
    if isinstance(module, BLUR_TYPES):
        return f"{type(module).__name__}({module.spec}, {module.padding})"
    if isinstance(module, BlurConv2d):
        return f"BlurConv2d(stride={module.stride}, {module.blur.spec}, {module.blur.padding})"
    if isinstance(module, nn.Conv2d):
        return f"Conv2d(stride={module.stride}, padding_mode={module.padding_mode})"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return f"{type(module).__name__}({module.kernel_size}, stride={module.stride})"
    return type(module).__name__


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _announce(report: ConversionReport, what: str, log_it: bool) -> None:
    if log_it:
        logger.info("%s: %s", what, report)
    if not report.replaced:
        warnings.warn(
            f"{what}: replaced nothing in this model ({len(report.skipped)} layers left alone)",
            NothingConvertedWarning,
            stacklevel=3,
        )
