"""Low-pass filter designs for blurred downsampling (Section 3.2, Table 1, Appendix E).

A filter is given by a *spec* (see :mod:`study.filters.spec` for the forms), designed as
1-D taps normalised to sum 1; the 2-D blur is their outer product (Appendix E.2).

>>> design("triangle-3")
array([0.25, 0.5 , 0.25])
>>> str(parse({"family": "firls", "taps": 3, "bands": [0, 0.4, 0.6, 1], "desired": [1, 1, 0, 0]}))
'firls(taps=3, bands=[0, 0.4, 0.6, 1], desired=[1, 1, 0, 0])'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from study.filters.errors import FilterSpecError
from study.filters.families import FAMILIES, MAX_TAPS
from study.filters.spec import FilterSpec, family_names, parse

__all__ = [
    "FAMILIES",
    "MAX_TAPS",
    "TABLE1",
    "FilterSpec",
    "FilterSpecError",
    "describe",
    "design",
    "family_names",
    "identify",
    "parse",
    "response",
]

Spec = str | Mapping[str, Any] | FilterSpec


def _table1() -> dict[str, FilterSpec]:
    """The paper's 19 filters (Table 1), row label -> spec: ``TABLE1``.

    The paper prints the Window and Least Squares weights rounded to two decimals and
    does not give their design parameters; ``firwin(cutoff=0.5, window=boxcar)`` and
    ``firls(bands=[0, 0.4, 0.6, 1])`` reproduce every printed weight
    (tests/test_filters.py)."""
    return {
        "Delta (baseline)": parse("delta"),
        **{f"Rectangle {n}": parse(f"rect-{n}") for n in range(2, 8)},
        **{f"Triangle {n}": parse(f"triangle-{n}") for n in (3, 5, 7)},
        **{f"Binomial {n}": parse(f"binomial-{n}") for n in range(4, 8)},
        **{
            f"Window {n}": parse({"family": "firwin", "taps": n, "cutoff": 0.5, "window": "boxcar"})
            for n in (3, 6, 7)
        },
        **{
            f"Least Squares {n}": parse(
                {"family": "firls", "taps": n, "bands": [0, 0.4, 0.6, 1], "desired": [1, 1, 0, 0]}
            )
            for n in (3, 7)
        },
    }


def __getattr__(name: str) -> Any:
    """``TABLE1``, made on first use: its Window rows validate a scipy window, and
    importing scipy.signal (about 1.4 s) is what `study pareto` and `study status` skip
    when no trial needs it."""
    if name == "TABLE1":
        table = globals()["TABLE1"] = _table1()
        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def design(spec: Spec) -> np.ndarray:
    """The 1-D taps of ``spec``: float64, shape ``(taps,)``, normalised to sum 1.

    For learnable families these are the initial taps.

    >>> design("binomial-5") * 16
    array([1., 4., 6., 4., 1.])
    >>> design({"family": "weights", "weights": [1, 1.57, 1]}).round(4)
    array([0.2801, 0.4398, 0.2801])
    """
    spec = parse(spec)
    taps = np.asarray(FAMILIES[spec.family].taps(dict(spec.params)), dtype=np.float64)
    total = taps.sum()
    if not np.isfinite(total) or abs(total) < 1e-12:
        raise FilterSpecError("filter", f"{spec} has DC gain 0; it cannot be normalised to 1")
    return taps / total


def response(spec: Spec, n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Frequency response of the normalised taps, through ``scipy.signal.freqz``.

    Returns ``(frequency, h)``: ``n`` frequencies from 0 (DC) to 1 (Nyquist) inclusive,
    as fractions of Nyquist, and the complex response there.

    >>> frequency, h = response("rect-2", n=3)
    >>> frequency, abs(h).round(4)
    (array([0. , 0.5, 1. ]), array([1.    , 0.7071, 0.    ]))
    """
    import scipy.signal

    angular, h = scipy.signal.freqz(design(spec), worN=n, include_nyquist=True)
    return angular / np.pi, h


def identify(spec: Spec) -> dict[str, Any]:
    """What a filter is, without its frequency response (so without importing
    scipy.signal for the fixed families): canonical string, family, number of taps, the
    normalised weights, whether they are learnable.

    >>> identify("binomial-3")["weights"]
    [0.25, 0.5, 0.25]
    """
    spec = parse(spec)
    taps = design(spec)
    return {
        "filter": str(spec),
        "family": spec.family,
        "taps": len(taps),
        "weights": [float(t) for t in taps],
        "learnable": spec.learnable,
    }


def describe(spec: Spec) -> dict[str, Any]:
    """A filter's key numbers, flat and named for logging.

    ``cutoff_3db`` is the first frequency (fraction of Nyquist) where the gain drops
    below 1/sqrt(2); ``nyquist_gain`` is ``|H|`` at Nyquist (0 for every binomial of 2 or
    more taps and every box of even length; 1/9 for triangle-5, whose boxes are odd).

    >>> info = describe("binomial-3")
    >>> info["weights"], info["nyquist_gain"], round(info["cutoff_3db"], 3)
    ([0.25, 0.5, 0.25], 0.0, 0.364)
    """
    spec = parse(spec)
    frequency, h = response(spec, n=2049)
    gain = np.abs(h)
    below = np.flatnonzero(gain < 1 / np.sqrt(2))
    return {
        **identify(spec),
        "dc_gain": float(gain[0]),
        "nyquist_gain": float(gain[-1]),
        "cutoff_3db": float(frequency[below[0]]) if below.size else 1.0,
    }
