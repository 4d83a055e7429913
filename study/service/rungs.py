"""The rung decision of multi-objective asynchronous successive halving (MO-ASHA), as
pure functions of the values at a rung (:mod:`study.service.scheduler` applies it in
Ray Tune).

A *rung* is an epoch at which trials are compared: ``grace``, ``grace*eta``,
``grace*eta**2``, ... strictly below the ``budget`` (a rung at the last epoch would stop
trials that have already paid for everything). The first result of a trial at or past a
rung that carries every rung metric (per-epoch validation metrics, e.g. ``val_acc`` and
``val_consistency``) makes the trial join that rung, and the decision is taken there:

1. the trials at the rung, newcomer included (``n`` of them), are sorted into
   non-dominated fronts, each objective in its own direction (``max`` or ``min``):
   front 0 is the rung's Pareto front, front 1 the front of the rest, and so on;
2. inside a front, the tie-break is the *crowding distance* of NSGA-II (Deb et al.,
   2002): the sum over objectives of the gap between a trial's two neighbours in that
   objective, divided by the objective's range over the rung; the extremes of a front
   get infinity; larger is better;
3. the newcomer's *rank* is the number of trials at the rung strictly better than it in
   (front, crowding) order, so equal trials share a rank; it continues iff
   ``rank * eta < n``, i.e. it is among the best ``ceil(n / eta)``;
4. with a noise margin (``confidence`` > 0, :func:`binomial_margins`), a newcomer the
   rank would stop goes on unless at least ``ceil(n / eta)`` trials at the rung beat it
   in every metric by more than the validation split's noise: rank alone can be
   reordered by noise, a margin that wide cannot.

So the first trial at a rung continues (rank 0), and so does a trial that dominates
every other trial at the rung (it is alone in front 0), or that is the strict best at the
rung in any one objective (an extreme of front 0). The crowding distance is computed on
distinct values (the nearest *different* value on each side), so duplicates get equal
distances and the result does not depend on the order in which trials arrived.

Why crowding distance and not an epsilon-net (Syne Tune's MOASHA): it is symmetric in
the objectives and needs no seed (the epsilon-net starts from the best point of one
chosen objective, or a random one, and orders greedily), it is a per-trial score, so the
newcomer's rank is a count rather than a position in a greedy sequence, and it is the
tie-break NSGA-II users already know. Like any diversity tie-break it may stop a
non-dominated newcomer that lands in a crowded part of a large front.

A decision is a pure function of the rung's population and the newcomer's values
(:func:`rung_decision`), logged as a :class:`RungDecision`.

>>> population = [[0.5, 0.5], [0.4, 0.4], [0.3, 0.3]]   # a chain: each dominates the next
>>> rung_decision(population, [0.6, 0.6], ["max", "max"], eta=3)  # dominates all three
RungOutcome(rank=0, front=0, population=4, quota=2, kept=True, surely_better=-1)
>>> rung_decision(population, [0.35, 0.35], ["max", "max"], eta=3)
RungOutcome(rank=2, front=2, population=4, quota=2, kept=False, surely_better=-1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from study.pareto.front import as_matrix, check_directions, nondominated_ranks


class RungOutcome(NamedTuple):
    """A rung decision: the newcomer's ``rank`` (trials strictly better than it), its
    ``front`` (0 = non-dominated), the ``population`` at the rung with it, ``quota`` =
    ``ceil(population / eta)`` ranks kept, whether it is ``kept``, and ``surely_better``:
    the trials at the rung that beat it in every objective by more than the noise
    (-1 when no noise margin was given)."""

    rank: int
    front: int
    population: int
    quota: int
    kept: bool
    surely_better: int = -1


def nondominated_fronts(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """Front index of each trial, shape ``(n_trials,)``, int: 0 for the non-dominated
    trials, 1 for those non-dominated once front 0 is removed, ... ``values`` has shape
    ``(n_trials, n_objectives)``; duplicates share a front. The non-domination rank of
    :func:`study.pareto.front.nondominated_ranks`, counted from 0.

    >>> nondominated_fronts([[1, 1], [1, 1], [2, 0], [0, 0], [2, 2]], ["max", "max"]).tolist()
    [1, 1, 1, 2, 0]
    >>> nondominated_fronts([[1, 5], [2, 5]], ["max", "min"]).tolist()
    [1, 0]
    """
    directions = check_directions(directions)
    return nondominated_ranks(as_matrix(values, len(directions)), directions) - 1


def crowding_distances(
    values: np.ndarray | Sequence[Sequence[float]], fronts: np.ndarray | Sequence[int]
) -> np.ndarray:
    """NSGA-II crowding distance of each trial within its front, shape ``(n_trials,)``.

    Per objective, a trial's contribution is the gap between the nearest *distinct*
    values above and below it among its front, divided by the objective's range over
    all ``values`` (shape ``(n_trials, n_objectives)``); a front's lowest and highest
    value get infinity; an objective constant within a front adds nothing. Direction
    does not matter. Duplicates get equal distances.

    >>> crowding_distances([[0, 3], [1, 2], [1, 2], [3, 0], [0, 0]], [0, 0, 0, 0, 1]).tolist()
    [inf, 2.0, 2.0, inf, 0.0]
    """
    array = np.asarray(values, dtype=np.float64)
    fronts = np.asarray(fronts, dtype=int)
    distances = np.zeros(array.shape[0])
    if array.shape[0] == 0:
        return distances
    spans = array.max(axis=0) - array.min(axis=0)
    for front in np.unique(fronts):
        members = np.flatnonzero(fronts == front)
        for j in range(array.shape[1]):
            column = array[members, j]
            levels = np.unique(column)
            if levels.size == 1:
                continue
            at = np.searchsorted(levels, column)
            inner = (at > 0) & (at < levels.size - 1)
            gaps = np.full(members.size, np.inf)
            gaps[inner] = (levels[at[inner] + 1] - levels[at[inner] - 1]) / spans[j]
            distances[members] += gaps
    return distances


def binomial_margins(
    population: np.ndarray | Sequence[Sequence[float]],
    newcomer: np.ndarray | Sequence[float],
    images: int,
    confidence: float,
) -> np.ndarray:
    """How much better than ``newcomer`` each trial must be, per objective, before the
    difference is more than noise: ``confidence`` standard errors of the difference of
    two fractions each measured on ``images`` validation images,
    ``z sqrt(p_a (1 - p_a) / n + p_b (1 - p_b) / n)`` (the binomial standard error; the
    split is shared, so this over-states the noise of a paired difference and errs on
    the side of keeping trials). Shape ``(k, n_objectives)``, like ``population``.

    >>> binomial_margins([[0.5, 0.9]], [0.5, 0.9], images=100, confidence=2.0).round(4).tolist()
    [[0.1414, 0.0849]]
    """
    others = np.clip(np.asarray(population, dtype=np.float64), 0.0, 1.0)
    mine = np.clip(np.asarray(newcomer, dtype=np.float64), 0.0, 1.0)
    variance = (others * (1 - others) + mine * (1 - mine)) / images
    return confidence * np.sqrt(variance)


def rung_decision(
    population: np.ndarray | Sequence[Sequence[float]],
    newcomer: np.ndarray | Sequence[float],
    directions: Sequence[str],
    eta: int,
    margins: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> RungOutcome:
    """Rank a trial arriving at a rung and decide whether it continues.

    ``population``: shape ``(k, n_objectives)``, the values of the ``k`` trials already at
    the rung (any order, ``k`` may be 0); ``newcomer``: shape ``(n_objectives,)``;
    ``directions``: ``max``/``min`` per objective; ``eta``: the reduction factor (>= 2).
    The rank counts the trials strictly better than the newcomer in (front, crowding
    distance) order, computed over all ``k + 1`` trials; kept iff ``rank * eta < k + 1``.

    ``margins`` (shape ``(k, n_objectives)``, e.g. :func:`binomial_margins`): a trial
    *surely beats* the newcomer when it is better by more than its margin in every
    objective. With margins the newcomer is stopped only when it also has at least
    ``quota`` trials surely beating it: it is out of the best ``ceil((k + 1) / eta)``
    beyond the noise, not only by values that noise could reorder.

    >>> rung_decision([], [0.1, 0.9], ["max", "min"], eta=3)
    RungOutcome(rank=0, front=0, population=1, quota=1, kept=True, surely_better=-1)
    >>> rung_decision([[0.5, 0.5]], [0.4, 0.4], ["max", "max"], eta=3)
    RungOutcome(rank=1, front=1, population=2, quota=1, kept=False, surely_better=-1)
    >>> rung_decision([[0.5, 0.5]], [0.4, 0.4], ["max", "max"], eta=3, margins=[[0.2, 0.2]])
    RungOutcome(rank=1, front=1, population=2, quota=1, kept=True, surely_better=0)
    """
    directions = check_directions(directions)
    if isinstance(eta, bool) or not isinstance(eta, int | np.integer) or eta < 2:
        raise ValueError(f"eta: {eta!r} must be a whole number >= 2")
    others = as_matrix(population, len(directions))
    mine = as_matrix(np.asarray(newcomer, dtype=np.float64).reshape(1, -1), len(directions))
    values = np.vstack([others, mine])
    fronts = nondominated_fronts(values, directions)
    crowding = crowding_distances(values, fronts)
    me = values.shape[0] - 1
    better = (fronts[:me] < fronts[me]) | (
        (fronts[:me] == fronts[me]) & (crowding[:me] > crowding[me])
    )
    rank, n = int(better.sum()), me + 1
    quota, kept, surely_better = -(-n // eta), rank * eta < n, -1
    if margins is not None:
        gaps = as_matrix(margins, len(directions))
        if gaps.shape[0] != others.shape[0]:
            raise ValueError(f"margins: {gaps.shape[0]} rows for {others.shape[0]} trials")
        signs = np.array([1.0 if direction == "max" else -1.0 for direction in directions])
        ahead = (others - mine) * signs > gaps
        surely_better = int(ahead.all(axis=1).sum())
        kept = kept or surely_better < quota
    return RungOutcome(
        rank=rank,
        front=int(fronts[me]),
        population=n,
        quota=quota,
        kept=kept,
        surely_better=surely_better,
    )


@dataclass(frozen=True)
class RungDecision:
    """One rung decision, as logged: ``trial_id`` (Tune's), ``rung`` (the rung's epoch),
    ``bracket`` (0 unless brackets > 1), ``values`` (the rung metrics, in the scheduler's
    metric order, as reported), ``rank`` (trials at the rung strictly better), ``front``
    (0 = non-dominated at the rung), ``population`` (trials at the rung, this one
    included), ``quota`` (ranks kept: ``ceil(population / eta)``), ``kept``, and
    ``surely_better`` (trials at the rung better by more than the noise in every metric;
    -1 without a noise margin, as in logs written before there was one)."""

    trial_id: str
    rung: int
    bracket: int
    values: tuple[float, ...]
    rank: int
    front: int
    population: int
    quota: int
    kept: bool
    surely_better: int = -1

    def describe(self, metrics: Sequence[str]) -> str:
        """One progress line, e.g. ``rung 3: trial 1a2b3c4d_00002 kept (rank 1 of 5, best
        2 kept; val_acc 0.9120 val_consistency 0.9610)``."""
        scores = " ".join(f"{m} {v:.4f}" for m, v in zip(metrics, self.values, strict=True))
        where = f"rung {self.rung}" + (f" (bracket {self.bracket})" if self.bracket else "")
        verdict = "kept" if self.kept else "stopped"
        noise = ""
        if self.surely_better >= 0 and self.rank >= self.quota:  # rank alone would stop it
            noise = f", {self.surely_better} better beyond noise"
        return (
            f"{where}: trial {self.trial_id} {verdict} (rank {self.rank} of "
            f"{self.population}, best {self.quota} kept{noise}; {scores})"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, text): for JSON, MLflow and scheduler state."""
        return {**asdict(self), "values": list(self.values)}
