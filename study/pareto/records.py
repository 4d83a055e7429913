"""A study's complete trials as plain records: what :mod:`study.pareto.store` reads from
MLflow and :mod:`study.pareto.export` writes out.

The package reads one way: ``front`` <- ``records`` <- ``export`` <- ``store`` (whose
:func:`~study.pareto.store.update_parent_front` writes the live front with ``export``)
<- ``command``; ``export`` never imports ``store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from study.pareto import front as fr

BASELINE = ("delta", "none")
"""The paper's baseline trial: no blur (filter ``delta``), no augmentation (``none``)."""

DELTA_REFERENCE = "delta"
"""The reference keyword (``--reference delta``): the hypervolume is measured from the
study's :data:`BASELINE` trial, so it is the region gained over the unblurred network."""

Reference = Sequence[float] | str | None
"""A hypervolume reference: numbers (one per objective), :data:`DELTA_REFERENCE`, or
``None`` for :func:`study.pareto.front.default_reference`."""


@dataclass(frozen=True)
class TrialRecord:
    """One complete trial (a FINISHED child run). ``objectives`` are in objective order,
    in the metrics' own units (fractions for accuracies); ``metrics`` holds every
    ``final.*`` metric without the prefix; ``params`` every ``optuna.*`` param (full key,
    string values as MLflow stores them). ``weights`` are the filter's normalised 1-D taps
    (for learnable filters: the initial taps)."""

    study: str
    run_id: str
    run_name: str
    trial_id: str
    filter: str
    family: str
    taps: int | None
    weights: tuple[float, ...]
    augment: str
    objectives: dict[str, float]
    metrics: dict[str, float]
    params: dict[str, str]
    end_time: int = 0

    @property
    def augmented(self) -> bool:
        """Trained with augmentation: ``augment`` is neither ``none`` nor unknown (``-``)."""
        return self.augment not in ("none", "-", "")


@dataclass
class StudyTrials:
    """A study's complete trials, in order of completion, and what was left out."""

    study: str
    experiment_id: str
    parent_run_id: str
    objectives: dict[str, str]
    records: list[TrialRecord]
    statuses: dict[str, int] = field(default_factory=dict)
    """Child runs by state (FINISHED, PRUNED = stopped early, FAILED, RUNNING, ...)."""
    missing: int = 0
    """FINISHED children left out: an objective not logged or not finite."""
    simulated: bool = False
    """A simulated study (closed-form metrics, :mod:`study.trial.simulated`)."""

    @property
    def names(self) -> list[str]:
        return list(self.objectives)

    @property
    def directions(self) -> list[str]:
        return list(self.objectives.values())

    def values(self) -> np.ndarray:
        """Objective values, shape ``(n_complete, n_objectives)``."""
        return np.array(
            [[r.objectives[name] for name in self.objectives] for r in self.records],
            dtype=np.float64,
        ).reshape(len(self.records), len(self.objectives))

    def ranks(self) -> np.ndarray:
        """Non-domination rank per record (1 = front), shape ``(n_complete,)``."""
        return fr.nondominated_ranks(self.values(), self.directions)

    def front(self) -> list[TrialRecord]:
        """The Pareto-front records, in order of completion."""
        mask = fr.front_mask(self.values(), self.directions)
        return [record for record, on in zip(self.records, mask, strict=True) if on]

    def baseline(self) -> np.ndarray:
        """Objective values of the study's :data:`BASELINE` trial (filter ``delta``,
        augmentation ``none``), shape ``(n_objectives,)``; the mean over such trials when
        there are several. Raises ``ValueError("reference: ...")`` when there is none."""
        rows = [
            [record.objectives[name] for name in self.objectives]
            for record in self.records
            if (record.filter, record.augment) == BASELINE
        ]
        if not rows:
            raise ValueError(
                f"reference: study {self.study!r} has no complete {BASELINE[0]} / "
                f"{BASELINE[1]} trial (unblurred, no augmentation) to measure from; "
                "give numbers or leave the default"
            )
        return np.asarray(rows, dtype=np.float64).mean(axis=0)

    def reference(self, reference: Reference = None) -> np.ndarray:
        """The hypervolume reference point: ``reference`` if numbers, :meth:`baseline` for
        :data:`DELTA_REFERENCE`, else :func:`study.pareto.front.default_reference`."""
        if isinstance(reference, str):
            if reference != DELTA_REFERENCE:
                raise ValueError(f"reference: {reference!r}; use numbers or {DELTA_REFERENCE}")
            return self.baseline()
        if reference is not None:
            return np.asarray(reference, dtype=np.float64)
        return fr.default_reference(self.values(), self.directions, self.names)

    def hypervolume(self, reference: Reference = None) -> float:
        """Hypervolume of the front against :meth:`reference`."""
        return fr.hypervolume(self.values(), self.directions, self.reference(reference))
