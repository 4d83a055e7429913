"""What a conversion changed: :class:`ConversionReport`, one :class:`Change` per
replaced module, and the warning when nothing was replaced."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

from torch import nn

from study.layers import APS_TYPES, BLUR_TYPES, CONTENT_AWARE_TYPES, IDEAL_TYPES, BlurConv2d

logger = logging.getLogger("study.convert")


class NothingConvertedWarning(UserWarning):
    """A conversion found nothing to change in the model."""


@dataclass(frozen=True)
class Change:
    """One module swapped: its dotted name, a short description before and after, and,
    for a strided convolution, where its blur went (``placement``)."""

    name: str
    before: str
    after: str
    placement: str = ""


@dataclass
class ConversionReport:
    """What a conversion replaced, what it left alone and why, and which containers it
    rewrote as ``torch.fx`` graph modules (and why)."""

    replaced: list[Change] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rewritten: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    """``(follower, leader)``: APS layers (by the name of the layer converted) that
    subsample on the phases their leader chose."""

    def counts(self) -> dict[str, int]:
        """Number of replacements per original layer type, e.g. ``{"MaxPool2d": 5}``."""
        out: dict[str, int] = {}
        for change in self.replaced:
            kind = change.before.split("(")[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def placements(self) -> dict[str, str]:
        """Strided convolution name -> where its blur went, e.g. ``"after-activation
        (relu)"`` or ``"after-conv (fallback: why)"``."""
        return {c.name: c.placement for c in self.replaced if c.placement}

    def __str__(self) -> str:
        if not self.replaced:
            head = "replaced nothing"
        else:
            kinds = ", ".join(f"{n} {k}" for k, n in self.counts().items())
            head = f"replaced {len(self.replaced)} layers ({kinds})"
        lines = [head]
        for c in self.replaced:
            where = f" [{c.placement}]" if c.placement else ""
            lines.append(f"  {c.name}: {c.before} -> {c.after}{where}")
        lines += [f"  rewrote {name}: {why}" for name, why in self.rewritten]
        lines += [f"  linked {name}: APS follows {leader}'s phases" for name, leader in self.links]
        lines += [f"  left {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


def short(module: nn.Module) -> str:
    """A module as a report line shows it: ``MaxBlurPool2d(binomial-5, reflect)``."""
    if isinstance(module, BlurConv2d):
        return f"{type(module).__name__}(stride={module.stride}, {_arguments(module.blur)})"
    if isinstance(module, BLUR_TYPES):
        return f"{type(module).__name__}({_arguments(module)})"
    if isinstance(module, nn.Conv2d):
        return f"Conv2d(stride={module.stride}, padding_mode={module.padding_mode})"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return f"{type(module).__name__}({module.kernel_size}, stride={module.stride})"
    return type(module).__name__


def _arguments(layer: nn.Module) -> str:
    """A blur layer's arguments, as a report shows them: ``binomial-5, circular``."""
    if isinstance(layer, IDEAL_TYPES):
        return f"cutoff={layer.cutoff:g}"
    if isinstance(layer, CONTENT_AWARE_TYPES):
        return f"taps={layer.predictor.taps}, groups={layer.predictor.groups}, {layer.padding}"
    norm = f", norm={layer.norm}" if isinstance(layer, APS_TYPES) else ""
    return f"{layer.spec}, {layer.padding}{norm}"


def announce(report: ConversionReport, what: str, log_it: bool) -> None:
    if log_it:
        logger.info("%s: %s", what, report)
    if not report.replaced:
        warnings.warn(
            f"{what}: replaced nothing in this model ({len(report.skipped)} layers left alone)",
            NothingConvertedWarning,
            stacklevel=3,
        )
