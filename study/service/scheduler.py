"""Multi-objective asynchronous successive halving (MO-ASHA) for Ray Tune.

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
(:func:`rung_decision`). :class:`MultiObjectiveASHA` keeps every decision
(:class:`RungDecision`) and rebuilds its rungs from that log alone;
:class:`SchedulerState` carries the log through Tune's experiment snapshots, since
``Tuner.restore`` does not restore a scheduler.

>>> population = [[0.5, 0.5], [0.4, 0.4], [0.3, 0.3]]   # a chain: each dominates the next
>>> rung_decision(population, [0.6, 0.6], ["max", "max"], eta=3)  # dominates all three
RungOutcome(rank=0, front=0, population=4, quota=2, kept=True, surely_better=-1)
>>> rung_decision(population, [0.35, 0.35], ["max", "max"], eta=3)
RungOutcome(rank=2, front=2, population=4, quota=2, kept=False, surely_better=-1)
"""

from __future__ import annotations

import logging
import math
import numbers
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.metrics.names import FRACTIONS
from study.pareto.front import check_direction, nondominated_ranks
from study.trial.config import ConfigError

if TYPE_CHECKING:
    from ray.tune import Tuner
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

STATE_VERSION = 1


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


def _matrix(values: np.ndarray | Sequence[Sequence[float]], width: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"values: shape {array.shape}; expected (n_trials, {width})")
    if not np.all(np.isfinite(array)):
        raise ValueError("values: not finite (NaN or inf)")
    return array


def _check_directions(directions: Sequence[str]) -> list[str]:
    directions = list(directions)
    if not directions:
        raise ValueError("directions: none given; one max or min per objective")
    return [check_direction("directions", direction) for direction in directions]


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
    directions = _check_directions(directions)
    return nondominated_ranks(_matrix(values, len(directions)), directions) - 1


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
    directions = _check_directions(directions)
    if isinstance(eta, bool) or not isinstance(eta, int | np.integer) or eta < 2:
        raise ValueError(f"eta: {eta!r} must be a whole number >= 2")
    others = _matrix(population, len(directions))
    mine = _matrix(np.asarray(newcomer, dtype=np.float64).reshape(1, -1), len(directions))
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
        gaps = _matrix(margins, len(directions))
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


class LiveFIFOScheduler(FIFOScheduler):
    """Tune's FIFO scheduler, choosing among the live trials only.

    Tune asks its scheduler which trial to start several times per step of its loop;
    ``FIFOScheduler`` answers by scanning every trial of the experiment, finished ones
    included, which made each step O(n) (docs/SCALE.md). This one scans the live trials
    (pending, running, paused: about the concurrency) and picks the earliest added, as
    FIFO does."""

    def __init__(self) -> None:
        super().__init__()
        # trial id -> the order Tune added it in; kept for an errored trial, which Tune
        # may retry without adding it again
        self._added: dict[str, int] = {}
        self._next = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_added": {}, "_next": 0, **state})  # pickled before it had them

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self._added[trial.trial_id] = self._next
        self._next += 1

    def on_trial_complete(
        self, tune_controller: TuneController, trial: Trial, result: dict
    ) -> None:
        self._added.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        self._added.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        from ray.tune.experiment import Trial

        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            ready = [trial for trial in live if trial.status == status]
            if ready:
                return min(ready, key=lambda t: self._added.get(t.trial_id, self._next))
        return None


class MultiObjectiveASHA(LiveFIFOScheduler):
    """Asynchronous successive halving over several objectives (see the module notes).

    Args:
        metrics: rung metric -> ``max`` or ``min``, in order, e.g.
            ``{"val_acc": "max", "val_consistency": "max"}``: per-epoch values the
            trials report. Tune's ``metric``/``mode`` stay unset (they belong to the
            searcher): setting them in ``TuneConfig`` too is refused.
        grace: epochs before the first rung (>= 1).
        eta: reduction factor, a whole number >= 2: rungs at ``grace * eta**k`` and about
            one trial in ``eta`` continues at each.
        budget: a trial's epochs; rungs lie strictly below it, so a trial is never
            stopped at its last epoch. ``None``: rungs without end (then a rung that
            falls on a trial's last epoch may stop it before its final report).
        brackets: HyperBand-style brackets; bracket ``s`` starts at ``grace * eta**s``.
            Trials are dealt to brackets round-robin in the order Tune adds them.
        time_attr: the result key holding the epoch (a whole number, increasing).
        confidence: stop a trial only when at least its quota of trials at the rung beat
            it in every rung metric by ``confidence`` standard errors of the difference
            (:func:`binomial_margins`; a metric that is no fraction, ``val_loss`` or
            ``train_loss``, gets no margin). 0: rank alone decides, as plain MO-ASHA.
        validation_images: the validation split's size, for the standard errors
            (required when ``confidence > 0``).

    Rung metrics missing from a result (e.g. the final report) or not finite: the trial
    continues and nothing is recorded. A trial that already has a decision at the rung
    (a retried or restored trial reporting an epoch again) gets the same decision again,
    and a stopped trial is told STOP at any later result: no decision is ever taken twice.
    """

    def __init__(
        self,
        *,
        metrics: Mapping[str, str],
        grace: int = 1,
        eta: int = 3,
        budget: int | None = None,
        brackets: int = 1,
        time_attr: str = "epoch",
        confidence: float = 0.0,
        validation_images: int | None = None,
    ) -> None:
        _check_settings(metrics, grace, eta, budget, brackets, time_attr)
        _check_noise(confidence, validation_images)
        super().__init__()
        self._metrics = {str(name): str(direction) for name, direction in metrics.items()}
        self._grace, self._eta, self._budget = grace, eta, budget
        self._brackets, self._time_attr = brackets, time_attr
        self._confidence = float(confidence)
        self._validation_images = validation_images
        self._assigned: dict[str, int] = {}  # trial id -> bracket
        self._decisions: list[RungDecision] = []
        self._rungs: dict[tuple[int, int], dict[str, tuple[float, ...]]] = {}
        self._decided: dict[tuple[str, int], RungDecision] = {}
        self._stopped: set[str] = set()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**_PRIVATE_NO_MARGIN, **state})  # pickled before the margin

    # -- what the service reads --------------------------------------------------------
    @property
    def metrics(self) -> dict[str, str]:
        """Rung metric -> direction, in order."""
        return dict(self._metrics)

    @property
    def decisions(self) -> list[RungDecision]:
        """Every decision so far, in the order taken (restored ones first)."""
        return list(self._decisions)

    @property
    def supports_buffered_results(self) -> bool:
        """Results one at a time, so a stopped trial trains no epoch past its rung."""
        return False

    def stopped(self, trial_id: str) -> bool:
        """Whether this scheduler stopped the trial at a rung."""
        return trial_id in self._stopped

    def stopped_by(self, trial_id: str) -> RungDecision | None:
        """The decision that stopped ``trial_id``, or None if it was not stopped."""
        if trial_id not in self._stopped:
            return None
        return next(d for d in reversed(self._decisions) if d.trial_id == trial_id and not d.kept)

    def rung_epochs(self, bracket: int = 0) -> list[int]:
        """The rungs of ``bracket`` below the budget (the first 10 when unbounded)."""
        rungs, rung = [], self._grace * self._eta**bracket
        while (self._budget is None or rung < self._budget) and len(rungs) < 10:
            rungs.append(rung)
            rung *= self._eta
        return rungs

    # -- Tune's hooks ------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Tune offers ``TuneConfig``'s metric and mode: refuse them (False makes Tune
        raise), since the rung metrics come from the constructor."""
        return metric is None and mode is None

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        self._bracket(trial.trial_id)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        """STOP or CONTINUE; a decision at the highest rung this result has reached."""
        return (
            TrialScheduler.CONTINUE if self.judge(trial.trial_id, result) else TrialScheduler.STOP
        )

    def judge(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Whether ``trial_id`` goes on after reporting ``result`` (one epoch's metrics):
        a decision at the highest rung the result has reached, taken once."""
        if trial_id in self._stopped:
            return False
        epoch, values = result.get(self._time_attr), self._rung_values(trial_id, result)
        if values is None or not _is_number(epoch):
            return True
        bracket = self._bracket(trial_id)
        rung = self._rung_at(epoch, bracket)
        if rung is None:
            return True
        decision = self._decided.get((trial_id, rung)) or self.decide(trial_id, rung, values)
        return decision.kept

    def on_trial_complete(
        self, tune_controller: TuneController, trial: Trial, result: dict
    ) -> None:
        """Nothing to decide: the trial's rung values were recorded as it reported them
        (its final report carries no new rung), and they stay in their rungs."""
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        """A pending or paused trial dropped by Tune: it holds no place at any rung."""
        super().on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        directions = ", ".join(f"{m}:{d}" for m, d in self._metrics.items())
        lines = [
            f"MultiObjectiveASHA on {directions}: grace {self._grace}, eta {self._eta}, "
            f"budget {self._budget}, {self._brackets} bracket(s), "
            f"{len(self._stopped)} trials stopped"
        ]
        for (bracket, rung), members in sorted(self._rungs.items()):
            kept = sum(self._decided[(t, rung)].kept for t in members)
            lines.append(
                f"  bracket {bracket} rung {rung}: {len(members)} trials, {kept} kept, "
                f"{len(members) - kept} stopped"
            )
        return "\n".join(lines)

    # -- the decision --------------------------------------------------------------------
    def decide(self, trial_id: str, rung: int, values: Sequence[float]) -> RungDecision:
        """Rank ``trial_id`` at ``rung`` (its bracket's) against the trials already
        there, record the decision and the trial's ``values`` (one per metric)."""
        bracket = self._bracket(trial_id)
        population = list(self._rungs.get((bracket, rung), {}).values())
        outcome = rung_decision(
            population,
            values,
            list(self._metrics.values()),
            self._eta,
            margins=self._margins(population, values),
        )
        decision = RungDecision(
            trial_id=trial_id,
            rung=rung,
            bracket=bracket,
            values=tuple(float(v) for v in values),
            rank=outcome.rank,
            front=outcome.front,
            population=outcome.population,
            quota=outcome.quota,
            kept=outcome.kept,
            surely_better=outcome.surely_better,
        )
        self._record(decision)
        logger.info(decision.describe(list(self._metrics)))
        return decision

    def _margins(
        self, population: Sequence[Sequence[float]], values: Sequence[float]
    ) -> np.ndarray | None:
        """The noise margin of each rung metric against each trial at the rung, or None
        when ``confidence`` is 0. Fractions (:data:`FRACTIONS`) get
        :func:`binomial_margins`; losses none."""
        if self._confidence <= 0 or self._validation_images is None:
            return None
        width = len(self._metrics)
        others = np.asarray(population, dtype=np.float64).reshape(-1, width)
        margins = binomial_margins(others, values, self._validation_images, self._confidence)
        fractions = np.array([metric in FRACTIONS for metric in self._metrics])
        return np.where(fractions, margins, 0.0)

    def _record(self, decision: RungDecision) -> None:
        if (decision.trial_id, decision.rung) in self._decided:
            raise ValueError(f"trial {decision.trial_id} has a decision at {decision.rung}")
        self._decisions.append(decision)
        members = self._rungs.setdefault((decision.bracket, decision.rung), {})
        members[decision.trial_id] = decision.values
        self._decided[(decision.trial_id, decision.rung)] = decision
        self._assigned.setdefault(decision.trial_id, decision.bracket)
        if not decision.kept:
            self._stopped.add(decision.trial_id)

    def _bracket(self, trial_id: str) -> int:
        if trial_id not in self._assigned:
            self._assigned[trial_id] = len(self._assigned) % self._brackets
        return self._assigned[trial_id]

    def _rung_at(self, epoch: float, bracket: int) -> int | None:
        """The highest rung of ``bracket`` at or below ``epoch`` (below the budget)."""
        rung = self._grace * self._eta**bracket
        below_budget = self._budget is None or rung < self._budget
        if epoch < rung or not below_budget:
            return None
        while rung * self._eta <= epoch and (
            self._budget is None or rung * self._eta < self._budget
        ):
            rung *= self._eta
        return rung

    def _rung_values(self, trial_id: str, result: Mapping[str, Any]) -> tuple[float, ...] | None:
        values = []
        for metric in self._metrics:
            value = result.get(metric)
            if not _is_number(value):
                return None
            if not math.isfinite(value):
                logger.warning("trial %s: %s is %s, no rung decision", trial_id, metric, value)
                return None
            values.append(float(value))
        return tuple(values)

    # -- state ----------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "metrics": [[m, d] for m, d in self._metrics.items()],
            "grace": self._grace,
            "eta": self._eta,
            "budget": self._budget,
            "brackets": self._brackets,
            "time_attr": self._time_attr,
            "confidence": self._confidence,
            "validation_images": self._validation_images,
        }

    def get_state(self) -> dict[str, Any]:
        """Plain data: the settings, the bracket of every trial seen, every decision.
        The rungs are rebuilt from the decisions."""
        return {
            "version": STATE_VERSION,
            "settings": self._settings(),
            "brackets": dict(self._assigned),
            "decisions": [d.as_dict() for d in self._decisions],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Replace this scheduler's state with ``state`` (from :meth:`get_state` of a
        scheduler with the same settings)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"scheduler state version {state.get('version')!r} unknown")
        if "confidence" not in state["settings"]:
            # Written before the noise margin existed: its decisions were taken by rank
            # alone, and the rest of the study is judged the same way.
            self._confidence, self._validation_images = 0.0, None
            state = {**state, "settings": {**state["settings"], **_NO_MARGIN}}
        if state["settings"] != self._settings():
            raise ValueError(
                f"scheduler state is for settings {state['settings']}, not {self._settings()}"
            )
        self._assigned, self._decisions, self._rungs = {}, [], {}
        self._decided, self._stopped = {}, set()
        for raw in state["decisions"]:
            self._record(RungDecision(**{**raw, "values": tuple(raw["values"])}))
        self._assigned.update(state["brackets"])

    def save(self, checkpoint_path: str) -> None:
        """Tune's scheduler checkpoint API (unused by ``Tuner.restore``)."""
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.set_state(pickle.load(file))


_NO_MARGIN = {"confidence": 0.0, "validation_images": None}
_PRIVATE_NO_MARGIN = {f"_{key}": value for key, value in _NO_MARGIN.items()}


def _check_noise(confidence: float, validation_images: int | None) -> None:
    """One-line :class:`ConfigError` for a bad ``confidence`` or a missing split size."""
    at = "study.scheduler.confidence"
    if isinstance(confidence, bool) or not _is_number(confidence) or not 0 <= confidence <= 5:
        raise ConfigError(at, f"{confidence!r} must be a number in [0, 5] (standard errors)")
    if confidence > 0:
        bad = isinstance(validation_images, bool) or not isinstance(validation_images, int)
        if bad or validation_images < 1:
            raise ConfigError(
                at,
                f"{confidence} standard errors need the validation split's size "
                "(data.validation: N); set confidence: 0 to rank by values alone",
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_settings(
    metrics: Mapping[str, str],
    grace: int,
    eta: int,
    budget: int | None,
    brackets: int,
    time_attr: str,
) -> None:
    """One-line :class:`ConfigError` for each bad setting (field ``study.scheduler.*``)."""
    at = "study.scheduler"
    if not isinstance(metrics, Mapping) or not metrics:
        raise ConfigError(
            f"{at}.metrics", "give a mapping metric: max|min, e.g. {val_acc: max, ...}"
        )
    for name, direction in metrics.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{at}.metrics", f"{name!r} is not a metric name")
        check_direction(f"{at}.metrics.{name}", direction, ConfigError)
    for field, value, low in (("grace", grace, 1), ("eta", eta, 2), ("brackets", brackets, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{at}.{field}", f"{value!r} must be a whole number >= {low}")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ConfigError(f"{at}.budget", f"{budget!r} must be a whole number >= 1")
        last = grace * eta ** (brackets - 1)
        if last >= budget:
            raise ConfigError(
                f"{at}.grace",
                f"the first rung of bracket {brackets - 1} is epoch {last}, not below the "
                f"budget of {budget} epochs: lower grace, eta or brackets",
            )
    if not isinstance(time_attr, str) or not time_attr:
        raise ConfigError(f"{at}.time_attr", f"{time_attr!r} is not a result key")


class SchedulerState(Callback):
    """Carries a :class:`MultiObjectiveASHA`'s state through Tune's experiment snapshots.

    Tune saves every callback's :meth:`get_state` with each experiment snapshot and, on
    ``Tuner.restore``, hands it back through :meth:`set_state` before the trials are
    re-added; a scheduler gets neither. Callback states are matched by position in
    ``RunConfig.callbacks``, so a restored run must list its callbacks in the same order.
    The scheduler here must be the one in ``TuneConfig``: both come back from Tune's
    ``tuner.pkl`` as one pickle, so keep the restored instance of this callback
    (:func:`restored_callbacks`) rather than building a new one.

    ``report`` (e.g. ``print``) gets each new decision as one line
    (:meth:`RungDecision.describe`); ``restored`` counts the decisions the last
    :meth:`set_state` brought back.
    """

    def __init__(
        self, scheduler: MultiObjectiveASHA, report: Callable[[str], Any] | None = None
    ) -> None:
        self.scheduler = scheduler
        self.report = report
        self.restored = 0
        self._shown = 0

    def get_state(self) -> dict[str, Any]:
        return {"mo_asha": self.scheduler.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state["mo_asha"])
        self.restored = self._shown = len(self.scheduler.decisions)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        """Tune calls this after the scheduler has judged ``result``: report the new
        decision, if any."""
        decisions = self.scheduler.decisions
        if self.report is not None:
            names = list(self.scheduler.metrics)
            for decision in decisions[self._shown :]:
                self.report(decision.describe(names))
        self._shown = len(decisions)


def restored_callbacks(tuner: Tuner) -> list[Callback]:
    """The callbacks of a ``Tuner.restore``-d tuner, as the list Tune will run: edit it
    in place (replace a progress callback, keep :class:`SchedulerState` where it was).

    Ray has no public way to give a restored Tuner callbacks; this is the one place that
    reads its private ``Tuner._local_tuner`` (a test fails if a Ray upgrade moves it).
    """
    try:
        run_config = tuner._local_tuner.get_run_config()
    except AttributeError as error:
        import ray

        raise RuntimeError(
            f"Ray {ray.__version__}: Tuner._local_tuner.get_run_config() is gone; "
            "study.service.scheduler.restored_callbacks needs updating"
        ) from error
    if run_config.callbacks is None:
        run_config.callbacks = []
    return run_config.callbacks
