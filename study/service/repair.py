"""Repairs after a killed driver: what Optuna and Tune disagree on."""

from __future__ import annotations

from study.service.plan import StudyPlan
from study.service.samplers import optuna_storage


def fail_orphaned_trials(study_plan: StudyPlan, known: set) -> list[int]:
    """Optuna trials still RUNNING that the restored Tune experiment does not hold (a
    killed driver asked for them after Tune's last snapshot) are marked FAIL, so
    samplers that avoid running points (grid) offer them again. Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    storage = optuna_storage(study_plan.optuna_storage)
    study = optuna.load_study(study_name=study_plan.name, storage=storage)
    orphaned = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number not in known:
            storage.set_trial_system_attr(trial._trial_id, "study.orphaned", True)
            if "grid_id" in trial.system_attrs:  # GridSampler counts failed points visited
                storage.set_trial_system_attr(trial._trial_id, "grid_id", -1)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            orphaned.append(trial.number)
    return orphaned


def known_optuna_trials(experiment_path: str) -> set:
    """The Optuna trial numbers of every trial in Tune's saved experiment, pending ones
    included (a ``ResultGrid`` leaves a trial's config empty until it reports)."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(experiment_path).trials
    except (RuntimeError, ValueError):  # killed before Tune's first snapshot: no trials
        return set()
    return {trial.config.get("optuna_trial") for trial in trials}
