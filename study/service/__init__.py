"""The study service: a search space planned and run on Ray Tune with an Optuna
sampler, each trial a Tune trainable on a worker, everything recorded in MLflow, with
early stopping, outage handling and repairs after a killed driver. Its modules, one
line each, and the call path of ``study run`` are in docs/ARCHITECTURE.md.
"""

from study.service.plan import StudyPlan, plan
from study.service.runner import StudyOutcome, run_study
from study.service.space import SearchSpace, StudySettings

__all__ = ["SearchSpace", "StudyOutcome", "StudyPlan", "StudySettings", "plan", "run_study"]
