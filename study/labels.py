"""How a trial's downsampling is named on fronts, in progress lines and tables, with
nothing heavy imported (no torch, no scipy): readers of MLflow (``study status``,
``study pareto``) name trials without building a layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any


def ideal_label(cutoff: Any, edge: Any = "zero") -> str:
    """The canonical string of an ideal low-pass: ``ideal(cutoff=0.5)``,
    ``ideal(cutoff=1/stride)`` (``None``), ``, edge=half`` added for the 1/2 edge.

    >>> ideal_label(0.25, "half")
    'ideal(cutoff=0.25, edge=half)'
    """
    shown = "1/stride" if cutoff is None else f"{cutoff:g}" if isinstance(cutoff, float) else cutoff
    return f"ideal(cutoff={shown}" + ("" if edge == "zero" else f", edge={edge}") + ")"


def downsampling_label(filter_spec: str, fields: Mapping[str, Any]) -> str:
    """A trial's downsampling as fronts and progress lines show it, from its model
    fields (a config section, or MLflow's ``model.*`` params as strings): the filter for
    ``blur``, ``aps(binomial-3)``, ``adaptive(taps=3, groups=2)``, ``ideal(cutoff=0.5)``.

    >>> downsampling_label("delta", {"downsample": "ideal", "ideal_cutoff": "0.25"})
    'ideal(cutoff=0.25)'
    >>> downsampling_label("delta", {"downsample": "ideal", "ideal_cutoff": "None"})
    'ideal(cutoff=1/stride)'
    """
    kind = fields.get("downsample", "blur")
    if kind == "adaptive":
        taps, groups = fields.get("adaptive_taps", 3), fields.get("adaptive_groups", 2)
        return f"adaptive(taps={taps}, groups={groups})"
    if kind == "ideal":
        cutoff = fields.get("ideal_cutoff")
        if cutoff in ("None", ""):
            cutoff = None
        with contextlib.suppress(TypeError, ValueError):  # shown as given if not a number
            cutoff = float(cutoff)
        return ideal_label(cutoff, fields.get("ideal_edge", "zero"))
    return filter_spec if kind == "blur" else f"{kind}({filter_spec})"
