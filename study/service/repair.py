"""Repairs after a killed driver: what Optuna and Tune disagree on.

A driver killed after asking Optuna for a trial but before Tune's next experiment
snapshot leaves an Optuna trial RUNNING that the restored experiment does not hold (an
*orphan*). ``study resume`` puts a grid study's orphans back in Optuna's queue, so the
next trials Tune asks for get them, with their numbers and parameters, and the grid goes
on in the order it would have (``GridSampler`` gives trial number ``k`` the ``k``-th
grid point; a failed orphan's point would come last, and an early-stopping scheduler
would then see its rung populations in another order). Other samplers draw from their
restored random state, which already reproduces an orphan's parameters in its place,
so their orphans are failed. Orphans still queued when the run ends are failed too.
"""

from __future__ import annotations

from study.service.plan import StudyPlan
from study.service.samplers import optuna_storage

ORPHANED = "study.orphaned"
REQUEUED = "study.requeued"


def repair_orphaned_trials(study_plan: StudyPlan, known: set, requeue: bool) -> list[int]:
    """Optuna trials still RUNNING that the restored Tune experiment does not hold (see
    the module notes): back to WAITING with ``requeue``, else FAIL (tag
    ``study.orphaned``; a grid offers a failed point again). Returns their numbers."""
    from optuna.trial import TrialState

    storage = optuna_storage(study_plan.optuna_storage)
    study_id = storage.get_study_id_from_name(study_plan.name)
    orphans = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in known:
            continue
        optuna_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if requeue:
            storage.set_trial_system_attr(optuna_id, REQUEUED, True)
            storage.set_trial_state_values(optuna_id, TrialState.WAITING)
        else:
            _fail(storage, optuna_id, trial)
        orphans.append(trial.number)
    return orphans


def fail_requeued_trials(study_plan: StudyPlan) -> list[int]:
    """Orphans put back in the queue that no trial took (the run ended or was stopped
    first): FAIL, tag ``study.orphaned``. Returns their numbers."""
    from optuna.trial import TrialState

    storage = optuna_storage(study_plan.optuna_storage)
    study_id = storage.get_study_id_from_name(study_plan.name)
    failed = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if trial.system_attrs.get(REQUEUED):
            optuna_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            _fail(storage, optuna_id, trial)
            failed.append(trial.number)
    return failed


def _fail(storage, optuna_id: int, trial) -> None:
    from optuna.trial import TrialState

    storage.set_trial_system_attr(optuna_id, ORPHANED, True)
    if "grid_id" in trial.system_attrs:  # GridSampler counts failed points visited
        storage.set_trial_system_attr(optuna_id, "grid_id", -1)
    storage.set_trial_state_values(optuna_id, TrialState.FAIL)


def known_optuna_trials(experiment_path: str) -> set:
    """The Optuna trial numbers of every trial in Tune's saved experiment, pending ones
    included (a ``ResultGrid`` leaves a trial's config empty until it reports)."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(experiment_path).trials
    except (RuntimeError, ValueError):  # killed before Tune's first snapshot: no trials
        return set()
    return {trial.config.get("optuna_trial") for trial in trials}
