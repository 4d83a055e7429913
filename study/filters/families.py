"""The low-pass filter families: their fields, their validation and their (unnormalised) taps.

Each family is registered once in :data:`FAMILIES`; :mod:`study.filters.spec` parses
strings and mappings against these definitions, so adding a family is adding one entry
here. Frequencies are fractions of the Nyquist frequency (scipy's ``fs=2`` convention):
0 is DC, 1 is Nyquist.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from study.filters.errors import FilterSpecError

MAX_TAPS = 64
"""Upper bound on the taps of any filter: a typo guard, far above any useful blur."""


# --- field coercion ------------------------------------------------------------------------


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FilterSpecError(path, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise FilterSpecError(path, f"expected a finite number, got {value!r}")
    return float(value)


def _taps(value: Any, path: str) -> int:
    number = _number(value, path)
    if not number.is_integer():
        raise FilterSpecError(path, f"expected a whole number of taps, got {value!r}")
    if not 1 <= number <= MAX_TAPS:
        raise FilterSpecError(path, f"{int(number)} is out of range; allowed: 1 to {MAX_TAPS}")
    return int(number)


def _cutoff(value: Any, path: str) -> float:
    number = _number(value, path)
    if not 0.0 < number < 1.0:
        raise FilterSpecError(
            path, f"{value!r} is outside (0, 1); it is a fraction of Nyquist (1 = Nyquist)"
        )
    return number


def _floats(value: Any, path: str) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | np.ndarray):
        raise FilterSpecError(path, f"expected a list of numbers, got {value!r}")
    if len(value) == 0:
        raise FilterSpecError(path, "expected a non-empty list of numbers")
    return tuple(_number(v, f"{path}[{i}]") for i, v in enumerate(value))


def _window(value: Any, path: str) -> str | tuple[Any, ...]:
    """A scipy window: a name (``hamming``) or a name with parameters (``[kaiser, 8.6]``)."""
    if isinstance(value, list | tuple) and value and isinstance(value[0], str):
        window: str | tuple[Any, ...] = (
            value[0],
            *(_number(v, f"{path}[{i + 1}]") for i, v in enumerate(value[1:])),
        )
    elif isinstance(value, str):
        window = value
    else:
        raise FilterSpecError(
            path, f"expected a scipy window name or [name, parameter...], got {value!r}"
        )
    try:
        import scipy.signal  # on first use: 1.4 s of import that `study pareto` may skip

        scipy.signal.get_window(window, 3, fftbins=False)
    except (ValueError, TypeError) as error:
        raise FilterSpecError(
            path, f"{value!r} is not a scipy.signal.get_window window ({error})"
        ) from None
    return window


def _flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise FilterSpecError(path, f"expected true or false, got {value!r}")
    return value


def _fixed_spec(spec: Any, path: str) -> Any:
    """A spec inside a spec (a :class:`Field` with ``spec=True``): :mod:`study.filters.spec`
    has parsed it already; here it must name a fixed family."""
    if FAMILIES[spec.family].learnable:
        raise FilterSpecError(path, f"must be a fixed filter, got learnable {spec}")
    return spec


@dataclass(frozen=True)
class Field:
    """One field of a family: its coercion and its default (``REQUIRED`` if none)."""

    name: str
    coerce: Callable[[Any, str], Any]
    default: Any = None
    required: bool = True
    help: str = ""
    spec: bool = False
    """The value is itself a filter spec: :mod:`study.filters.spec` parses it into a
    ``FilterSpec`` before ``coerce`` sees it (so this module never imports that one)."""


@dataclass(frozen=True)
class Family:
    """A filter family: its fields, and how its unnormalised taps are designed from them."""

    name: str
    fields: tuple[Field, ...]
    taps: Callable[[Mapping[str, Any]], np.ndarray]
    summary: str
    short: bool = False
    """Has the short form ``name-N`` (``N`` = taps) and no other field."""
    learnable: bool = False
    check: Callable[[Mapping[str, Any]], None] = field(default=lambda params: None)
    """Cross-field validation, run after every field is coerced."""


# --- the designs (unnormalised taps; design() normalises to DC gain 1) ------------------------


def _rect(n: int) -> np.ndarray:
    return np.ones(n)


def _triangle(n: int) -> np.ndarray:
    """Two boxes convolved (Appendix E.1): lengths ceil((N+1)/2) and floor((N+1)/2)."""
    return np.convolve(_rect((n + 2) // 2), _rect((n + 1) // 2))


def _binomial(n: int) -> np.ndarray:
    """Row N-1 of Pascal's triangle: [1, 1] convolved with itself N-1 times."""
    return np.array([math.comb(n - 1, k) for k in range(n)], dtype=np.float64)


def _firwin(params: Mapping[str, Any]) -> np.ndarray:
    import scipy.signal

    return scipy.signal.firwin(params["taps"], params["cutoff"], window=params["window"])


def _firls(params: Mapping[str, Any]) -> np.ndarray:
    weight = params.get("weight")
    import scipy.signal

    return scipy.signal.firls(params["taps"], params["bands"], params["desired"], weight=weight)


def _check_firls(params: Mapping[str, Any]) -> None:
    bands, desired, weight = params["bands"], params["desired"], params.get("weight")
    if params["taps"] % 2 == 0:
        raise FilterSpecError(
            "filter.taps", f"{params['taps']} is even; firls designs odd tap counts only"
        )
    if len(bands) % 2 or len(bands) < 2:
        raise FilterSpecError(
            "filter.bands", f"needs pairs of band edges (an even count >= 2), got {len(bands)}"
        )
    if any(not 0.0 <= b <= 1.0 for b in bands) or any(
        b1 > b2 for b1, b2 in itertools.pairwise(bands)
    ):
        raise FilterSpecError(
            "filter.bands", f"{list(bands)} must be non-decreasing within [0, 1] (1 = Nyquist)"
        )
    if any(bands[i + 1] <= bands[i] for i in range(0, len(bands), 2)):
        raise FilterSpecError(
            "filter.bands", f"{list(bands)}: each band [start, end] needs end > start"
        )
    if any(d < 0 for d in desired):
        raise FilterSpecError("filter.desired", f"{list(desired)}: gains must be >= 0")
    if weight is not None and any(w < 0 for w in weight):
        raise FilterSpecError("filter.weight", f"{list(weight)}: weights must be >= 0")
    if len(desired) != len(bands):
        raise FilterSpecError(
            "filter.desired",
            f"has {len(desired)} values; needs one per band edge ({len(bands)})",
        )
    if weight is not None and len(weight) != len(bands) // 2:
        raise FilterSpecError(
            "filter.weight", f"has {len(weight)} values; needs one per band ({len(bands) // 2})"
        )


def _check_weights(params: Mapping[str, Any]) -> None:
    weights = params["weights"]
    if len(weights) > MAX_TAPS:
        raise FilterSpecError(
            "filter.weights", f"has {len(weights)} taps; allowed: at most {MAX_TAPS}"
        )
    if abs(math.fsum(weights)) < 1e-12:
        raise FilterSpecError(
            "filter.weights", f"{list(weights)} sum to 0; a low-pass needs DC gain"
        )


def _check_learnable(params: Mapping[str, Any]) -> None:
    init = params["init"]
    taps = FAMILIES[init.family].taps(dict(init.params))
    if params["symmetric"] and not np.allclose(taps, taps[::-1], rtol=0, atol=1e-12):
        raise FilterSpecError(
            "filter.init", f"{init} is not symmetric; use symmetric: false or a symmetric init"
        )


_TAPS = Field("taps", _taps, help=f"number of taps, 1 to {MAX_TAPS}")
_CUTOFF = Field("cutoff", _cutoff, help="-6 dB cutoff, fraction of Nyquist in (0, 1)")
_WINDOW = Field("window", _window, default="hamming", required=False, help="scipy window")


def _fixed_family(name: str, taps: Callable[[int], np.ndarray], summary: str) -> Family:
    return Family(name, (_TAPS,), lambda p: taps(p["taps"]), summary, short=True)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("delta", (), lambda p: np.ones(1), "1 tap, no blur: the paper's baseline"),
        _fixed_family("rect", _rect, "box filter [1, 1, ..., 1] (Table 1, Rectangle)"),
        _fixed_family("triangle", _triangle, "two boxes convolved, [1, 2, ..., 2, 1] (Table 1)"),
        _fixed_family("binomial", _binomial, "Pascal's triangle row, [1, 4, 6, 4, 1] (Table 1)"),
        Family(
            "firwin",
            (_TAPS, _CUTOFF, _WINDOW),
            _firwin,
            "window method, scipy.signal.firwin (Table 1, Window)",
        ),
        Family(
            "firls",
            (
                _TAPS,
                Field("bands", _floats, help="band edges, fractions of Nyquist"),
                Field("desired", _floats, help="desired gain at each band edge"),
                Field("weight", _floats, required=False, help="weight of each band"),
            ),
            _firls,
            "least squares, scipy.signal.firls (Table 1, Least Squares)",
            check=_check_firls,
        ),
        Family(
            "weights",
            (Field("weights", _floats, help="the taps, normalised to sum 1"),),
            lambda p: np.asarray(p["weights"], dtype=np.float64),
            "explicit taps",
            check=_check_weights,
        ),
        Family(
            "learnable",
            (
                Field("init", _fixed_spec, help="any fixed filter spec", spec=True),
                Field("symmetric", _flag, default=True, required=False, help="keep taps mirrored"),
            ),
            lambda p: FAMILIES[p["init"].family].taps(dict(p["init"].params)),
            "trainable taps initialised from init, DC gain held at 1",
            learnable=True,
            check=_check_learnable,
        ),
        Family(
            "learnable-cutoff",
            (_TAPS, _CUTOFF, _WINDOW),
            _firwin,
            "windowed sinc whose cutoff frequency is trained",
            learnable=True,
        ),
    )
}
