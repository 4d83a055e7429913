"""Pareto fronts of a study's trials: non-dominated sorting and hypervolume.

Pure functions on arrays. ``values`` has shape ``(n_trials, n_objectives)`` in the metrics'
own units (fractions in [0, 1] for accuracies and consistency), ``directions`` is one of
``"max"`` / ``"min"`` per objective. The paper's Fig. 5 plots such a front: consistency
(up) against accuracy (right), both maximised.

The work is done by ``moocore`` (public API: ``is_nondominated``, ``pareto_rank``,
``hypervolume``) in its minimisation convention: maximised objectives are negated first
(:func:`to_loss`), and moocore's own ``maximise`` flag is never used (in moocore 0.3.2
``pareto_rank(x, maximise=[False])`` maximises a single objective).

>>> values = [[0.934, 0.966], [0.931, 0.984], [0.924, 0.987], [0.92, 0.95]]
>>> nondominated_ranks(values, ["max", "max"]).tolist()
[1, 1, 1, 2]
>>> round(hypervolume(values, ["max", "max"], names=["test_acc", "test_consistency"]), 6)
0.921774
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

DIRECTIONS = ("max", "min")

BOUNDED_METRICS = frozenset(
    {
        "val_acc",
        "val_acc_shift",
        "val_consistency",
        "test_acc",
        "test_acc_shift_random",
        "test_acc_shift_mean",
        "test_consistency",
        "test_variation",
    }
)
"""Final metrics that are fractions in [0, 1]; their default reference is fixed (0 when
maximised, 1 when minimised), so a study's hypervolume never decreases as trials finish."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_objectives(text: str | Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, str]:
    """``"test_acc:max,test_consistency:max"`` (or a mapping / pairs) -> ``{name: direction}``.

    Raises ``ValueError("objectives: ...")`` on bad syntax, an unknown direction, or a
    repeated name.

    >>> parse_objectives("test_acc:max, variation:min")
    {'test_acc': 'max', 'variation': 'min'}
    >>> parse_objectives("test_acc")
    Traceback (most recent call last):
    ...
    ValueError: objectives: 'test_acc' is not NAME:max or NAME:min (e.g. test_acc:max)
    """
    if isinstance(text, str):
        items = [part.strip() for part in text.split(",")]
        if not any(items):
            raise ValueError("objectives: empty; give NAME:max|min pairs, e.g. test_acc:max")
        pairs = []
        for item in items:
            name, sep, direction = item.partition(":")
            if not sep:
                raise ValueError(
                    f"objectives: {item!r} is not NAME:max or NAME:min (e.g. test_acc:max)"
                )
            pairs.append((name.strip(), direction.strip()))
    elif isinstance(text, Mapping):
        pairs = [(str(k), str(v)) for k, v in text.items()]
    else:
        pairs = [(str(k), str(v)) for k, v in text]
    if not pairs:
        raise ValueError("objectives: empty; give NAME:max|min pairs, e.g. test_acc:max")
    out: dict[str, str] = {}
    for name, direction in pairs:
        if not _NAME.match(name):
            raise ValueError(f"objectives: {name!r} is not a metric name")
        if direction.lower() not in DIRECTIONS:
            raise ValueError(
                f"objectives: {name}:{direction} has direction {direction!r}; use max or min"
            )
        if name in out:
            raise ValueError(f"objectives: {name} is given twice")
        out[name] = direction.lower()
    return out


def _value_error(field: str, problem: str) -> Exception:
    return ValueError(f"{field}: {problem}")


def check_direction(
    field: str, direction: object, error: Callable[[str, str], Exception] = _value_error
) -> str:
    """``direction`` when it is ``max`` or ``min``; else raise ``error(field, problem)``,
    one line naming the field (the service passes its ``ConfigError``).

    >>> check_direction("study.objectives.test_acc", "maximise")
    Traceback (most recent call last):
    ...
    ValueError: study.objectives.test_acc: 'maximise'; use max or min
    """
    if direction not in DIRECTIONS:
        raise error(field, f"{direction!r}; use max or min")
    return str(direction)


def check_directions(directions: Sequence[str], n: int | None = None) -> list[str]:
    """``directions`` as a list when each is ``max`` or ``min`` (and there are ``n`` of
    them, if given); else a one-line ``ValueError`` naming ``directions``."""
    directions = list(directions)
    if not directions:
        raise ValueError("directions: none given; one max or min per objective")
    if n is not None and len(directions) != n:
        raise ValueError(f"directions: {len(directions)} given for {n} objectives")
    return [check_direction("directions", direction) for direction in directions]


def _signs(directions: Sequence[str], n: int) -> np.ndarray:
    """-1 for each maximised objective, +1 for each minimised one."""
    return np.array([-1.0 if d == "max" else 1.0 for d in check_directions(directions, n)])


def as_matrix(
    values: np.ndarray | Sequence[Sequence[float]], width: int | None = None
) -> np.ndarray:
    """``values`` as a finite float64 ``(n_trials, n_objectives)`` array (``width``
    objectives, if given); an empty input is ``(0, width)``; else a one-line
    ``ValueError`` naming ``values``."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 and width is not None:
        array = array.reshape(0, width)
    if array.ndim != 2 or (width is not None and array.shape[1] != width):
        expected = "n_objectives" if width is None else width
        raise ValueError(f"values: shape {array.shape}; expected (n_trials, {expected})")
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError("values: not finite (NaN or inf)")
    return array


def to_loss(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """Values in the minimisation convention: maximised columns negated.

    >>> to_loss([[0.9, 0.2]], ["max", "min"]).tolist()
    [[-0.9, 0.2]]
    """
    empty = np.size(values) == 0  # an empty front takes its width from the directions
    array = as_matrix(values, len(directions) if empty else None)
    return array * _signs(directions, array.shape[1])


def nondominated_ranks(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """Non-domination rank of each trial, shape ``(n_trials,)``, int: 1 is the Pareto front,
    2 the front once rank 1 is removed, and so on.

    A point dominates another when it is at least as good in every objective and better
    in one; identical points never dominate each other, so duplicates share a rank.

    >>> nondominated_ranks([[1, 1], [1, 1], [2, 0], [0, 0], [2, 2]], ["max", "max"]).tolist()
    [2, 2, 2, 3, 1]
    >>> nondominated_ranks([[3, 5], [2, 4], [1, 3], [3, 5], [1, 5]], ["max", "min"]).tolist()
    [1, 1, 1, 1, 2]
    >>> nondominated_ranks(np.zeros((0, 2)), ["max", "max"]).tolist()
    []
    """
    import moocore

    loss = to_loss(values, directions)
    if loss.shape[0] == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(moocore.pareto_rank(loss), dtype=int) + 1


def front_mask(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """Boolean mask, shape ``(n_trials,)``: True on the Pareto front (every copy of a
    duplicated front point is True).

    >>> front_mask([[0.93, 0.97], [0.92, 0.98], [0.91, 0.96]], ["max", "max"]).tolist()
    [True, True, False]
    """
    import moocore

    loss = to_loss(values, directions)
    if loss.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(loss, keep_weakly=True), dtype=bool)


def default_reference(
    values: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[str],
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """The default hypervolume reference point, shape ``(n_objectives,)``.

    Rule: an objective in :data:`BOUNDED_METRICS` (a fraction in [0, 1]) takes the worst
    end of that range: 0 when maximised (accuracy, consistency), 1 when minimised
    (variation); the point is then fixed for the whole study, so the hypervolume logged
    after each trial only grows. Any other objective (``train_loss``, seconds, unnamed
    columns) takes the worst value among ``values``, i.e. among all complete trials.

    That origin lies far from every trial: the hypervolume from it is about best accuracy
    x best consistency, about 0.92 for any CIFAR-10 study. To compare studies, measure
    from a baseline instead (``study pareto --reference delta``: the study's unblurred,
    unaugmented trial).

    >>> default_reference([[0.9, 0.5], [0.8, 2.0]], ["max", "min"], ["test_acc", "train_loss"])
    array([0., 2.])
    >>> default_reference([[0.9, 0.5], [0.8, 2.0]], ["max", "min"])
    array([0.8, 2. ])
    """
    array = as_matrix(values)
    signs = _signs(directions, array.shape[1])
    names = list(names) if names is not None else [""] * array.shape[1]
    reference = np.empty(array.shape[1])
    for j, (name, sign) in enumerate(zip(names, signs, strict=True)):
        if name in BOUNDED_METRICS:
            reference[j] = 0.0 if sign < 0 else 1.0
        elif array.shape[0]:
            reference[j] = array[:, j].min() if sign < 0 else array[:, j].max()
        else:
            reference[j] = 0.0
    return reference


def hypervolume(
    front_values: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[str],
    reference: np.ndarray | Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> float:
    """Hypervolume dominated by ``front_values`` (shape ``(n, n_objectives)``; any points,
    dominated ones add nothing) and bounded by ``reference`` (shape ``(n_objectives,)``,
    default :func:`default_reference` of these values), in the product of the objectives'
    units. Points not strictly better than the reference in every objective add nothing.
    Exact for any number of objectives (``moocore.hypervolume``).

    >>> hypervolume([[0.5, 0.5]], ["max", "max"], [0, 0])
    0.25
    >>> hypervolume([[1, 3], [2, 2], [3, 1]], ["min", "min"], [4, 4])
    6.0
    >>> hypervolume([[5, 5]], ["min", "min"], [4, 4])
    0.0
    """
    import moocore

    loss = to_loss(front_values, directions)
    if reference is None:
        reference = default_reference(front_values, directions, names)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (loss.shape[1],):
        raise ValueError(f"reference: {ref.size} values for {loss.shape[1]} objectives")
    ref = ref * _signs(directions, loss.shape[1])
    if not np.all(np.isfinite(ref)):
        raise ValueError("reference: not finite")
    inside = loss[np.all(loss < ref, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref))


def staircase(front_values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Vertices of the step line through a 2-objective front (the boundary of the region
    it dominates), shape ``(2n - 1, 2)`` for ``n`` distinct front points (dominated points
    are dropped), in the values' own units, best first objective first; used by the plots.

    >>> staircase(np.array([[0.9, 0.99], [0.95, 0.97]]), ["max", "max"]).tolist()
    [[0.95, 0.97], [0.9, 0.97], [0.9, 0.99]]
    """
    import moocore

    loss = to_loss(front_values, directions)
    if loss.shape[1] != 2:
        raise ValueError("staircase: needs exactly 2 objectives")
    loss = np.unique(loss, axis=0)  # sorted by the first objective, best first
    loss = loss[moocore.is_nondominated(loss)]
    points = [loss[0]]
    for previous, point in itertools.pairwise(loss):
        points.append(np.array([point[0], previous[1]]))
        points.append(point)
    return np.array(points) * _signs(directions, 2)
