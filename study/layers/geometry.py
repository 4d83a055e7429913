"""Sizes on the sampling grid, shared by the layers, the model surgery and the metrics.

>>> pair(3), pair((2, 1))
((3, 3), (2, 1))
>>> output_size(7, 2, "ceil"), output_size(7, 2, "floor"), output_size(1, 2, "floor")
(4, 3, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Rounding = Literal["ceil", "floor"]
ROUNDINGS: tuple[str, ...] = ("ceil", "floor")


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a size, stride or padding given as one int or two."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def output_size(n: int, stride: int, rounding: str) -> int:
    """Samples left of ``n`` after subsampling by ``stride``: ``ceil(n / stride)``, or
    ``floor(n / stride)`` but at least 1."""
    return -(-n // stride) if check_rounding(rounding) == "ceil" else max(1, n // stride)


def check_rounding(rounding: str) -> str:
    """``rounding`` if it is one of :data:`ROUNDINGS`, else a one-line ``ValueError``."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}; got {rounding!r}")
    return rounding
