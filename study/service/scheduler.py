"""Multi-objective asynchronous successive halving (MO-ASHA) for Ray Tune.

The decision at a rung is :func:`study.service.rungs.rung_decision` (the algorithm, and
why crowding distance, are described there). :class:`MultiObjectiveASHA` is the Tune
scheduler that takes those decisions as trials report, keeps every one
(:class:`~study.service.rungs.RungDecision`) and rebuilds its rungs from that log alone;
:class:`SchedulerState` carries the log through Tune's experiment snapshots, since
``Tuner.restore`` does not restore a scheduler. :class:`LiveFIFOScheduler` is the
scheduler of studies without early stopping.
"""

from __future__ import annotations

import logging
import math
import numbers
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.metrics.names import FRACTIONS
from study.pareto.front import check_direction
from study.service.rungs import RungDecision, binomial_margins, rung_decision
from study.trial.config import ConfigError

if TYPE_CHECKING:
    from ray.tune import Tuner
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial


logger = logging.getLogger(__name__)


STATE_VERSION = 1


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
        decision = RungDecision(trial_id, rung, bracket, tuple(float(v) for v in values), *outcome)
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
