"""The study service: a search space planned and run on Ray Tune with an Optuna
sampler, each trial a Tune trainable on a worker, everything recorded in MLflow, with
early stopping, outage handling and repairs after a killed driver. Its modules, one
line each, and the call path of ``study run`` are in docs/ARCHITECTURE.md.

The names below are imported on first use: ``study status`` and ``study list`` import
:mod:`study.service.status` without Ray Tune or torch. ``study.service.plan`` is the
module; the function is ``study.service.plan.plan``.
"""

from __future__ import annotations

from study.lazy import lazy_members

_EXPORTS = {
    "SearchSpace": "study.service.space",
    "StudySettings": "study.service.space",
    "StudyPlan": "study.service.plan",
    "StudyOutcome": "study.service.runner",
    "run_study": "study.service.runner",
}

__getattr__, __all__ = lazy_members(__name__, _EXPORTS)
