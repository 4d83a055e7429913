"""The plots' visual encoding (the paper's Fig. 5): colour = filter family, number of
sides = taps, filled or hollow = augmentation; labels and the family order tables use."""

from __future__ import annotations

from typing import Any

import numpy as np

from study.pareto.records import TrialRecord

FAMILY_ORDER = ("delta", "rect", "triangle", "binomial", "firwin", "firls", "weights")


FAMILY_LABELS = {
    "delta": "Delta (baseline)",
    "rect": "Rectangle",
    "triangle": "Triangle",
    "binomial": "Binomial",
    "firwin": "Window",
    "firls": "Least Squares",
    "weights": "Weights",
    "learnable": "Learnable",
    "learnable-cutoff": "Learnable cutoff",
    "adaptive": "Content-aware (adaptive)",
    "ideal": "Ideal low-pass",
}


_PALETTE = {
    "delta": "#000000",
    "rect": "#1f77b4",
    "triangle": "#ff7f0e",
    "binomial": "#2ca02c",
    "firwin": "#d62728",
    "firls": "#9467bd",
    "weights": "#8c564b",
    "learnable": "#e377c2",
    "learnable-cutoff": "#7f7f7f",
    "adaptive": "#17becf",
    "ideal": "#bcbd22",
}


_SPARE = ("#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a")


LINESTYLES = ("-", "--", ":", "-.")


DASHES = ("solid", "dash", "dot", "dashdot")


_PLOTLY_SYMBOLS = {
    1: "star",
    2: "diamond-tall",
    3: "triangle-up",
    4: "diamond",
    5: "pentagon",
    6: "hexagon",
    7: "circle",
    8: "octagon",
}


_BAR = np.array([[-0.3, -1.0], [0.3, -1.0], [0.3, 1.0], [-0.3, 1.0], [-0.3, -1.0]])


"""The 2-tap marker: a narrow bar (two long sides) that, unlike ``|``, can be hollow."""

LABEL_ALL_UP_TO = 40


"""Plots label every point by its filter up to this many points, else the front only."""


def family_color(family: str) -> str:
    """The plots' colour of a filter family (Fig. 5: colour = FIR design method).

    >>> family_color("binomial")
    '#2ca02c'
    """
    if family in _PALETTE:
        return _PALETTE[family]
    return _SPARE[sum(map(ord, family)) % len(_SPARE)]


def tap_marker(taps: int | None) -> Any:
    """The matplotlib marker of a tap count (Fig. 5: number of sides = number of taps):
    a regular polygon with ``taps`` sides from 3 to 12 taps, a narrow bar for 2, a star
    for 1 (the baseline; a circle would look like a 7-gon), a cross otherwise. Every one
    can be drawn filled or hollow (the augmentation encoding).

    >>> tap_marker(1), tap_marker(4), tap_marker(None)
    ('*', (4, 0, 0), 'X')
    >>> tap_marker(2).shape  # the bar's vertices
    (5, 2)
    """
    if taps is None or taps < 1 or taps > 12:
        return "X"
    if taps == 1:
        return "*"
    if taps == 2:
        return _BAR
    return (taps, 0, 0)


def tap_symbol(taps: int | None, augmented: bool = False) -> str:
    """The plotly symbol: as :func:`tap_marker`, ``-open`` when augmented."""
    return _PLOTLY_SYMBOLS.get(taps or 0, "x") + ("-open" if augmented else "")


AUGMENTATION_LEGEND = ("filled: no augmentation", "hollow: augmented")


"""How the plots encode training augmentation (the paper's Fig. 5 left and right panels
in one plot)."""


def filter_label(record: TrialRecord, limit: int = 28) -> str:
    """A point's label: the canonical filter string, shortened to ``family-taps`` past
    ``limit`` characters."""
    if len(record.filter) <= limit:
        return record.filter
    return f"{record.family}-{record.taps}"


def taps_label(taps: int | None) -> str:
    if taps is None:
        return "no fixed taps (own low-pass)"
    return "1 tap" if taps == 1 else f"{taps} taps"


def family_key(family: str) -> tuple[int, str]:
    order = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return order, family
