"""What the layers' arguments may be, and the one-line checks that say so: torch-free,
so that a config or a search space is validated without importing torch.

>>> check_choice("padding", "mirror", PADDING_MODES)
Traceback (most recent call last):
...
ValueError: padding must be one of circular, reflect, replicate, zeros; got 'mirror'
"""

from __future__ import annotations

import math
from typing import Any, Literal

from study.filters import FilterSpec

Padding = Literal["circular", "reflect", "replicate", "zeros"]
PADDING_MODES: tuple[str, ...] = ("circular", "reflect", "replicate", "zeros")
Order = Literal["pool-blur", "blur-pool"]
ORDERS: tuple[str, ...] = ("pool-blur", "blur-pool")
FilterLike = str | dict[str, Any] | FilterSpec

DOWNSAMPLERS: tuple[str, ...] = ("blur", "aps", "adaptive", "ideal")
"""The downsampling operators (:class:`study.layers.Downsampling`)."""
OWN_LOWPASS: tuple[str, ...] = ("adaptive", "ideal")
"""Operators that bring their own low-pass: their filter must be ``delta``."""
Norm = Literal["l2", "l1", "linf"]
APS_NORMS: tuple[str, ...] = ("l2", "l1", "linf")
"""How adaptive polyphase sampling ranks the phases (:mod:`study.layers.aps`)."""
MAX_TAPS = 9
"""The widest predicted kernel of content-aware downsampling (:mod:`study.layers.adaptive`)."""
EDGES: tuple[str, ...] = ("zero", "half")
"""The weight of a frequency bin exactly on the ideal cutoff: 0 (the reference's) or 1/2."""


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a one-line ``ValueError``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_kernel_taps(taps: Any, name: str = "taps") -> int:
    """``taps`` if it is an odd whole number in ``[3, 9]``, else a one-line ``ValueError``."""
    whole = isinstance(taps, int) and not isinstance(taps, bool)
    if not whole or not 3 <= taps <= MAX_TAPS or taps % 2 == 0:
        raise ValueError(f"{name}: expected an odd whole number in [3, {MAX_TAPS}], got {taps!r}")
    return taps


def check_groups(groups: Any, channels: int | None = None, name: str = "groups") -> int:
    """``groups`` if it is a whole number >= 1 that divides ``channels`` (when known)."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{name}: expected a whole number >= 1, got {groups!r}")
    if channels is not None and channels % groups:
        raise ValueError(
            f"{name}: {groups} does not divide the {channels} channels of the layer; "
            "use a divisor of every downsampled layer's channel count"
        )
    return groups


def check_cutoff(cutoff: Any, name: str = "cutoff") -> float:
    """``cutoff`` as a float in ``(0, 1]``, else a one-line ``ValueError``."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float):
        raise ValueError(f"{name}: expected a number in (0, 1], got {cutoff!r}")
    if not (math.isfinite(cutoff) and 0 < cutoff <= 1):
        raise ValueError(f"{name}: expected a number in (0, 1], got {cutoff!r}")
    return float(cutoff)


def check_edge(edge: Any, name: str = "edge") -> str:
    """``edge`` if it is one of :data:`EDGES`, else a one-line ``ValueError``."""
    if edge not in EDGES:
        raise ValueError(f"{name}: expected one of {', '.join(EDGES)}, got {edge!r}")
    return edge
