"""One downsampling operator, named and parametrised: what a model's every subsampling
becomes, and the factory that makes each form of it.

The operators (``kind``), each a search dimension of a study:

* ``blur``: the paper's blur-pool with ``filter`` (``delta``: plain subsampling);
* ``aps``: blur with ``filter``, then adaptive polyphase sampling by ``norm``
  (:mod:`study.layers.aps`);
* ``adaptive``: a predicted per-pixel, per-group ``taps x taps`` low-pass
  (:mod:`study.layers.adaptive`);
* ``ideal``: the ideal low-pass up to ``cutoff`` x Nyquist (default ``1/stride``), the
  bin on the cutoff weighted by ``edge`` (:mod:`study.layers.ideal`).

``adaptive`` and ``ideal`` bring their own low-pass, so their ``filter`` must be
``delta``. Each operator has a canonical string, as the filters do. This module imports no torch
until a layer is made (validating a config does not need it):

>>> str(Downsampling("aps", "binomial-3")), str(Downsampling("ideal", cutoff=0.5))
('aps(norm=l2, filter=binomial-3)', 'ideal(cutoff=0.5)')
>>> str(Downsampling("ideal")), str(Downsampling("ideal", edge="half"))
('ideal(cutoff=1/stride)', 'ideal(cutoff=1/stride, edge=half)')
>>> Downsampling("adaptive", "binomial-3")
Traceback (most recent call last):
...
ValueError: filter: adaptive downsampling has its own low-pass; use delta, got binomial-3
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.filters import FilterSpec, parse
from study.labels import downsampling_label, ideal_label
from study.layers.choices import (
    APS_NORMS,
    DOWNSAMPLERS,
    OWN_LOWPASS,
    FilterLike,
    Padding,
    check_choice,
    check_cutoff,
    check_edge,
    check_groups,
    check_kernel_taps,
)
from study.layers.geometry import Rounding

if TYPE_CHECKING:
    from torch import nn

    from study.layers.modules import BlurConv2d

#: The name of each :class:`Downsampling` field where models and configs take it as a
#: keyword (:func:`study.models.build`, :func:`study.convert.antialias`, ``model.*``).
FIELD_NAMES: dict[str, str] = {
    "downsample": "kind",
    "filter": "filter",
    "aps_norm": "norm",
    "adaptive_taps": "taps",
    "adaptive_groups": "groups",
    "ideal_cutoff": "cutoff",
    "ideal_edge": "edge",
}

__all__ = [
    "DOWNSAMPLERS",
    "FIELD_NAMES",
    "OWN_LOWPASS",
    "Downsampling",
    "describe_downsampling",
    "downsampling_label",
]


@dataclass(frozen=True)
class Downsampling:
    """A downsampling operator: ``kind`` and the parameters it reads (the others are
    ignored): ``filter`` (``blur``, ``aps``), ``norm`` (``aps``), ``taps`` and ``groups``
    (``adaptive``), ``cutoff`` and ``edge`` (``ideal``; ``cutoff=None``: ``1/stride``
    at each layer). Invalid values raise a one-line ``ValueError`` naming the
    parameter."""

    kind: str = "blur"
    filter: FilterLike = "delta"
    norm: str = "l2"
    taps: int = 3
    groups: int = 2
    cutoff: float | None = None
    edge: str = "zero"

    def __post_init__(self) -> None:
        check_choice("downsample", self.kind, DOWNSAMPLERS)
        spec = parse(self.filter)
        object.__setattr__(self, "filter", spec)
        if self.kind in OWN_LOWPASS and spec.family != "delta":
            raise ValueError(
                f"filter: {self.kind} downsampling has its own low-pass; use delta, got {spec}"
            )
        if self.kind == "aps":
            check_choice("aps_norm", self.norm, APS_NORMS)
        if self.kind == "adaptive":
            check_kernel_taps(self.taps, "adaptive_taps")
            check_groups(self.groups, name="adaptive_groups")
        if self.kind == "ideal":
            if self.cutoff is not None:
                object.__setattr__(self, "cutoff", check_cutoff(self.cutoff, "ideal_cutoff"))
            check_edge(self.edge, "ideal_edge")

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Downsampling:
        """From keyword names (:data:`FIELD_NAMES`); others are ignored, missing ones
        take their defaults.

        >>> str(Downsampling.from_fields({"downsample": "adaptive", "adaptive_taps": 5}))
        'adaptive(taps=5, groups=2)'
        """
        return cls(
            **{FIELD_NAMES[key]: value for key, value in fields.items() if key in FIELD_NAMES}
        )

    @property
    def spec(self) -> FilterSpec:
        """The parsed filter spec."""
        assert isinstance(self.filter, FilterSpec)
        return self.filter

    @property
    def plain(self) -> bool:
        """Plain strided subsampling: blur-pool with the ``delta`` filter."""
        return self.kind == "blur" and self.spec.family == "delta"

    def __str__(self) -> str:
        if self.kind == "blur":
            return str(self.spec)
        if self.kind == "aps":
            return f"aps(norm={self.norm}, filter={self.spec})"
        if self.kind == "adaptive":
            return f"adaptive(taps={self.taps}, groups={self.groups})"
        return ideal_label(self.cutoff, self.edge)

    def params(self) -> dict[str, Any]:
        """The parameters this kind reads, as ``build`` arguments (``downsample=...``)."""
        own = {
            "blur": {},
            "aps": {"aps_norm": self.norm},
            "adaptive": {"adaptive_taps": self.taps, "adaptive_groups": self.groups},
            "ideal": {"ideal_cutoff": self.cutoff, "ideal_edge": self.edge},
        }[self.kind]
        return {"downsample": self.kind, **own}

    # --- the forms ------------------------------------------------------------------------

    def pool(
        self,
        channels: int | None,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "ceil",
    ) -> nn.Module:
        """Low-pass and subsample (a blur-pool, or what replaces it)."""
        from study.layers.adaptive import AdaptiveBlurPool2d
        from study.layers.aps import APSPool2d
        from study.layers.ideal import IdealPool2d
        from study.layers.modules import BlurPool2d

        if self.kind == "aps":
            return APSPool2d(channels, self.spec, stride, padding, rounding, norm=self.norm)
        if self.kind == "adaptive":
            return AdaptiveBlurPool2d(channels, self.taps, self.groups, stride, padding, rounding)
        if self.kind == "ideal":
            return IdealPool2d(channels, self.cutoff, stride, rounding, padding, self.edge)
        return BlurPool2d(channels, self.spec, stride, padding, rounding)

    def dense_pool(
        self,
        kind: str,
        channels: int | None,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] = 2,
        padding: Padding = "circular",
        rounding: Rounding = "floor",
    ) -> nn.Module:
        """A ``max`` or ``avg`` pool evaluated densely, then this operator (eq. 3's
        MaxBlurPool and its kin)."""
        from study.layers.adaptive import AvgAdaptiveBlurPool2d, MaxAdaptiveBlurPool2d
        from study.layers.aps import AvgAPSPool2d, MaxAPSPool2d
        from study.layers.ideal import AvgIdealPool2d, MaxIdealPool2d
        from study.layers.modules import BlurAvgPool2d, MaxBlurPool2d

        check_choice("pool", kind, ("max", "avg"))
        geometry = (kernel_size, stride, padding)
        if self.kind == "aps":
            layer = MaxAPSPool2d if kind == "max" else AvgAPSPool2d
            return layer(channels, self.spec, *geometry, rounding=rounding, norm=self.norm)
        if self.kind == "adaptive":
            layer = MaxAdaptiveBlurPool2d if kind == "max" else AvgAdaptiveBlurPool2d
            return layer(channels, self.taps, self.groups, *geometry, rounding=rounding)
        if self.kind == "ideal":
            layer = MaxIdealPool2d if kind == "max" else AvgIdealPool2d
            return layer(channels, self.cutoff, *geometry, rounding=rounding, edge=self.edge)
        layer = MaxBlurPool2d if kind == "max" else BlurAvgPool2d
        return layer(channels, self.spec, *geometry, rounding=rounding)

    def conv(self, conv: nn.Conv2d, padding: Padding | None = None) -> BlurConv2d:
        """``conv`` (strided) as a convolution at stride 1 followed by this operator,
        sharing its parameter tensors."""
        from study.layers.adaptive import AdaptiveBlurConv2d
        from study.layers.aps import APSConv2d
        from study.layers.ideal import IdealConv2d
        from study.layers.modules import BlurConv2d

        if self.kind == "aps":
            return APSConv2d.from_conv(conv, self.spec, padding, self.norm)
        if self.kind == "adaptive":
            return AdaptiveBlurConv2d.from_conv(conv, self.taps, self.groups, padding)
        if self.kind == "ideal":
            return IdealConv2d.from_conv(conv, self.cutoff, padding, self.edge)
        return BlurConv2d.from_conv(conv, self.spec, padding)


def describe_downsampling(downsample: str, filter: Any, norm: str = "l2", **params: Any) -> str:
    """The canonical string of a model's downsampling: the filter spec for ``blur``,
    ``aps(norm=..., filter=...)`` for ``aps``, and so on (see :class:`Downsampling`).

    >>> describe_downsampling("aps", "binomial-3"), describe_downsampling("blur", "delta")
    ('aps(norm=l2, filter=binomial-3)', 'delta')
    """
    return str(Downsampling(downsample, filter, norm, **params))
