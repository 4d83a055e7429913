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


@dataclass
class StudyTrials:
    """A study's complete trials, in order of completion, and what was left out."""

    study: str
    experiment_id: str
    parent_run_id: str
    objectives: dict[str, str]
    records: list[TrialRecord]
    statuses: dict[str, int] = field(default_factory=dict)
    """Child runs by status (FINISHED, FAILED, RUNNING, ...)."""
    missing: int = 0
    """FINISHED children left out: an objective not logged or not finite."""

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

    def reference(self, reference: Sequence[float] | None = None) -> np.ndarray:
        """``reference`` if given, else :func:`study.pareto.front.default_reference`."""
        if reference is not None:
            return np.asarray(reference, dtype=np.float64)
        return fr.default_reference(self.values(), self.directions, self.names)

    def hypervolume(self, reference: Sequence[float] | None = None) -> float:
        """Hypervolume of the front against :meth:`reference`."""
        return fr.hypervolume(self.values(), self.directions, self.reference(reference))
