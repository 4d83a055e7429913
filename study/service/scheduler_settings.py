"""Early stopping in a study: the ``study.scheduler`` settings and the scheduler they build.

A space file turns multi-objective successive halving on with::

    study:
      objectives: {val_acc: max, val_consistency: max}
      scheduler: {kind: mo-asha, grace: 1, eta: 3}     # or just: scheduler: mo-asha

``metrics`` are per-epoch metrics (``train_loss``, or the validation split's
``val_acc``, ``val_acc_shift``, ``val_consistency``, ``val_loss``): a list takes each
metric's direction from ``study.objectives`` (else its natural one: ``min`` for losses,
``max`` otherwise), a mapping ``{metric: max|min}`` says it. Without ``metrics`` the
objectives are used, which must then be per-epoch metrics, except that accuracy
objectives are ranked by ``train_loss`` (:func:`default_metrics`: a validation score is
a snapshot of the weights, noisy early in training; the epoch's mean training loss
ranks as the final accuracy will, docs/study.md "Which metric ranks a rung"). Test-set
metrics are refused: a trial measures them once, at the end, so a rung never sees them,
and stopping trials by them would select by the test set.

The budget is the space's ``train.epochs``, one value for the whole study (a searched
``train.epochs`` is refused by :meth:`~study.service.space.SearchSpace.budget`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from study.metrics.names import FRACTIONS, PER_EPOCH, TEST_METRICS
from study.pareto.front import check_direction
from study.trial.config import ConfigError

if TYPE_CHECKING:
    from study.service.scheduler import MultiObjectiveASHA

#: ``study.scheduler`` keys and their defaults (``metrics``: the objectives).
DEFAULTS: dict[str, Any] = {
    "kind": "mo-asha",
    "metrics": None,
    "grace": 1,
    "eta": 3,
    "brackets": 1,
    "confidence": 0.0,
}
#: Per-epoch metrics measured on a snapshot of the weights at the epoch's end: noisy
#: early in training at a high learning rate. Ranked at a rung by default through
#: ``train_loss``, the mean over every step of the epoch (docs/study.md, "Early
#: stopping": measured rank correlations with the final values).
SNAPSHOT_ACCURACY = ("val_acc", "val_acc_shift", "val_loss")
#: A rung's noise is too large to separate trials when two standard errors of the
#: difference of two consistencies of 0.9 on the validation split exceed this.
SEPARABLE = 0.05
AT = "study.scheduler"


@dataclass(frozen=True)
class SchedulerSettings:
    """A study's early-stopping scheduler: ``kind`` (``mo-asha``), the rung ``metrics``
    (name -> ``max``/``min``, in order), ``grace`` (epochs before the first rung),
    ``eta`` (reduction factor: rungs at ``grace * eta**k``, about one trial in ``eta``
    goes on), HyperBand-style ``brackets``, and ``confidence``: a trial is stopped only
    when enough trials beat it by more than this many standard errors of the validation
    split (0: by rank alone)."""

    kind: str = "mo-asha"
    metrics: Mapping[str, str] = field(default_factory=dict)
    grace: int = DEFAULTS["grace"]
    eta: int = DEFAULTS["eta"]
    brackets: int = DEFAULTS["brackets"]
    confidence: float = DEFAULTS["confidence"]

    def describe(self) -> str:
        """One line, e.g. ``mo-asha grace=1 eta=3 brackets=1 confidence=2
        val_acc:max,val_consistency:max``."""
        metrics = ",".join(f"{m}:{d}" for m, d in self.metrics.items())
        return (
            f"{self.kind} grace={self.grace} eta={self.eta} brackets={self.brackets} "
            f"confidence={self.confidence:g} {metrics}"
        )

    def rungs(self, budget: int) -> list[int]:
        """The rung epochs of bracket 0 below ``budget``."""
        rungs, rung = [], self.grace
        while rung < budget:
            rungs.append(rung)
            rung *= self.eta
        return rungs


def parse_scheduler(raw: Any, objectives: Mapping[str, str]) -> SchedulerSettings | None:
    """``study.scheduler`` as written (None, ``none``, ``mo-asha`` or a mapping) ->
    settings, or None for no early stopping. One-line :class:`ConfigError` otherwise."""
    if raw is None or raw is False or raw == "none":
        return None
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            AT, f"{raw!r}: give a mapping such as {{kind: mo-asha, grace: 2, eta: 3}}, or none"
        )
    unknown = [key for key in raw if key not in DEFAULTS]
    if unknown:
        raise ConfigError(f"{AT}.{unknown[0]}", f"unknown key; allowed: {', '.join(DEFAULTS)}")
    values = {**DEFAULTS, **raw}
    if not isinstance(values["kind"], str) or values["kind"] not in SCHEDULERS:
        raise ConfigError(
            f"{AT}.kind", f"{values['kind']!r} is not allowed; allowed: {', '.join(SCHEDULERS)}"
        )
    for key, low in (("grace", 1), ("eta", 2), ("brackets", 1)):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{AT}.{key}", f"{value!r} must be a whole number >= {low}")
    confidence = values["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ConfigError(f"{AT}.confidence", f"{confidence!r} must be a number in [0, 5]")
    if not 0 <= confidence <= 5:
        raise ConfigError(
            f"{AT}.confidence", f"{confidence!r} must be in [0, 5] (standard errors; 0: off)"
        )
    return SchedulerSettings(
        kind=values["kind"],
        metrics=_metrics(values["metrics"], objectives),
        grace=values["grace"],
        eta=values["eta"],
        brackets=values["brackets"],
        confidence=float(confidence),
    )


def _metrics(raw: Any, objectives: Mapping[str, str]) -> dict[str, str]:
    """Rung metric -> direction; per-epoch metrics only."""
    if raw is None:
        not_per_epoch = [m for m in objectives if m not in PER_EPOCH]
        if not_per_epoch:
            raise ConfigError(
                f"{AT}.metrics",
                f"not given, and the objectives {', '.join(not_per_epoch)} are not measured "
                "every epoch; say which per-epoch metrics rank trials at a rung, e.g. "
                "metrics: [train_loss, val_consistency] (with data.validation: N)",
            )
        return default_metrics(objectives)
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, Mapping):
        metrics = {str(m): d for m, d in raw.items()}
    elif isinstance(raw, list) and all(isinstance(m, str) for m in raw):
        metrics = {m: objectives.get(m, PER_EPOCH.get(m, "max")) for m in raw}
    else:
        raise ConfigError(
            f"{AT}.metrics", f"{raw!r}: give a list [val_acc, ...] or a mapping {{val_acc: max}}"
        )
    if not metrics:
        raise ConfigError(f"{AT}.metrics", "empty; e.g. [val_acc, val_consistency]")
    for metric, direction in metrics.items():
        if metric in TEST_METRICS:
            raise ConfigError(
                f"{AT}.metrics.{metric}",
                "is measured once, at the end of a trial, on the test set: a rung never sees "
                "it, and stopping by it would select by the test set; use the validation "
                f"split's per-epoch metrics ({', '.join(PER_EPOCH)})",
            )
        if metric not in PER_EPOCH:
            raise ConfigError(
                f"{AT}.metrics.{metric}",
                f"not a per-epoch metric; allowed: {', '.join(PER_EPOCH)}",
            )
        check_direction(f"{AT}.metrics.{metric}", direction, ConfigError)
    return metrics


def default_metrics(objectives: Mapping[str, str]) -> dict[str, str]:
    """The rung metrics of per-epoch ``objectives``: each accuracy objective measured on
    a snapshot (:data:`SNAPSHOT_ACCURACY`) is ranked by ``train_loss`` (min), the others
    (``val_consistency``) by themselves.

    >>> default_metrics({"val_acc": "max", "val_consistency": "max"})
    {'train_loss': 'min', 'val_consistency': 'max'}
    """
    metrics: dict[str, str] = {}
    for metric, direction in objectives.items():
        if metric in SNAPSHOT_ACCURACY:
            metrics.setdefault("train_loss", "min")
        else:
            metrics.setdefault(metric, direction)
    return metrics


def signal_warnings(settings: SchedulerSettings, budget: int, validation_images: int) -> list[str]:
    """What ``study run`` says before it starts about rungs that would rank on noise:
    a snapshot accuracy ranked before half the budget, and a validation split too small
    to tell consistencies apart (one line each)."""
    warnings = []
    early = [m for m in settings.metrics if m in SNAPSHOT_ACCURACY]
    if early and settings.grace < budget / 2:
        warnings.append(
            f"{AT}.metrics: {', '.join(early)} at the first rung (epoch {settings.grace} of "
            f"{budget}) ranks a snapshot of the weights that is noisy early in training "
            "(rank correlation with the final val_acc measured at 0.27-0.61 after 3 of 9 "
            "epochs, train_loss's 0.90-0.97: docs/study.md, 'Which metric ranks a rung'); "
            "rank by train_loss (the default without metrics) or set grace to half the budget"
        )
    fractions = [m for m in settings.metrics if m in FRACTIONS]
    if fractions and validation_images > 0:
        margin = 2 * (2 * 0.9 * 0.1 / validation_images) ** 0.5
        if margin > SEPARABLE:
            warnings.append(
                f"data.validation: {validation_images} images: at a rung, {fractions[0]} "
                f"values of 0.9 closer than {margin:.3f} are within two standard errors; "
                f"hold out at least {math.ceil(8 * 0.09 / SEPARABLE**2)} images for "
                "rungs that separate such trials, or set study.scheduler.confidence: 2 to "
                "stop only trials behind by more than the noise"
            )
    return warnings


def check_budget(settings: SchedulerSettings, budget: int) -> None:
    """Every bracket needs a rung strictly below the budget (a rung at the last epoch
    would save nothing): one-line error naming ``grace`` otherwise."""
    last = settings.grace * settings.eta ** (settings.brackets - 1)
    if last >= budget:
        bracket = f" of bracket {settings.brackets - 1}" if settings.brackets > 1 else ""
        raise ConfigError(
            f"{AT}.grace",
            f"the first rung{bracket} is epoch {last}, not below train.epochs = {budget}: "
            "lower grace (or eta, brackets), or train longer",
        )


def _mo_asha(
    settings: SchedulerSettings, budget: int, validation_images: int | None
) -> MultiObjectiveASHA:
    from study.service.scheduler import MultiObjectiveASHA

    return MultiObjectiveASHA(
        metrics=dict(settings.metrics),
        grace=settings.grace,
        eta=settings.eta,
        budget=budget,
        brackets=settings.brackets,
        time_attr="epoch",
        confidence=settings.confidence if validation_images else 0.0,
        validation_images=validation_images or None,
    )


#: ``study.scheduler.kind`` -> factory ``(settings, budget, validation images) -> Tune
#: scheduler``.
SCHEDULERS: dict[str, Callable[[SchedulerSettings, int, int | None], Any]] = {"mo-asha": _mo_asha}


def build_scheduler(
    settings: SchedulerSettings, budget: int, validation_images: int | None = None
) -> MultiObjectiveASHA:
    """The Tune scheduler ``settings`` name, for trials of ``budget`` epochs judged on a
    validation split of ``validation_images`` (None or 0: no noise margin)."""
    check_budget(settings, budget)
    return SCHEDULERS[settings.kind](settings, budget, validation_images)
