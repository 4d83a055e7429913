"""The study service: a search space (:mod:`~study.service.space`) planned
(:mod:`~study.service.plan`) and run on Ray Tune with an Optuna sampler
(:mod:`~study.service.samplers`, :mod:`~study.service.runner`), each trial a Tune
trainable on a worker (:mod:`~study.service.trainable`), everything recorded in MLflow
(:mod:`~study.service.tracking`), progress on the driver
(:mod:`~study.service.progress`) and ``study status`` (:mod:`~study.service.status`).
Early stopping: MO-ASHA (:mod:`~study.service.scheduler`) configured by
``study.scheduler`` (:mod:`~study.service.stopping`), stopped trials PRUNED in Optuna
(:mod:`~study.service.pruning`); repairs after a killed driver in
:mod:`~study.service.repair`.
"""

from study.service.plan import StudyPlan, plan
from study.service.runner import StudyOutcome, run_study
from study.service.space import SearchSpace, StudySettings

__all__ = ["SearchSpace", "StudyOutcome", "StudyPlan", "StudySettings", "plan", "run_study"]
