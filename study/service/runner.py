"""The study service: Ray Tune runs the trials, Optuna decides what to try next, MLflow
records everything.

:func:`run_study` builds a ``Tuner`` with ``OptunaSearch`` (the space sampled
define-by-run, multi-objective through lists of metrics and modes, a seeded sampler
and a persistent Optuna storage under a unique study name), ``tune.with_resources``,
a concurrency limit and ``FailureConfig`` retries. Each trial runs
:func:`study.trial.run_trial` in its own folder and reports every epoch with a
checkpoint, so a retried trial resumes from its last epoch.

With ``study.scheduler`` set, MO-ASHA (:mod:`~study.service.scheduler`) judges trials at
rungs on per-epoch validation metrics and stops some early. A stopped trial reaches
Optuna as PRUNED (:class:`~study.service.searcher.PruningSearcher`), its MLflow child run
ends ``KILLED`` with tag ``study.pruned`` (:func:`~study.service.tracking.mark_pruned`),
and it never enters a front. The scheduler's state travels with Tune's experiment
snapshots (:class:`~study.service.scheduler.SchedulerState`), so ``study resume``
carries on with the decisions taken so far. Callback order is fixed: ``[StudyProgress,
SchedulerState]`` (Tune matches restored callback states by position).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.mlflow_layout import SIMULATED_TAG, error_gist, fail_fast, parent_run
from study.paths import leave_ray_working_dir
from study.secrets import has_secret, redact
from study.service.cluster import connect, warn_if_tracking_is_local
from study.service.plan import (
    SNAPSHOT_PERIOD,
    StudyPlan,
    check_resources,
    ray_address,
    runs_locally,
    snapshot_period,
)
from study.service.repair import (
    fail_requeued_trials,
)
from study.service.samplers import optuna_storage
from study.service.space import SearchSpace, StudySettings
from study.service.tracking import (
    PatientClient,
    quiet_urllib3,
    request_settings,
    set_parent_status,
    start_parent,
)
from study.service.tuner import fresh_tuner, restored_tuner, trial_dirname, trial_name
from study.settings import environment
from study.trial.config import ConfigError

if TYPE_CHECKING:
    from study.service.scheduler import MultiObjectiveASHA

# Experiments started before the Tuner moved to study.service.tuner pickled these by
# their old place: kept here so that `study resume` restores them.
_trial_name, _trial_dirname = trial_name, trial_dirname


@dataclass(frozen=True)
class StudyOutcome:
    """How a run of ``study run`` or ``study resume`` ended."""

    planned: int
    complete: int
    failed: int
    unfinished: int  # stopped by Ctrl-C / SIGTERM: `study resume` continues them
    stopped: int = 0  # stopped early at a rung by the scheduler (pruned): done with
    untracked: int = 0  # records MLflow did not take within the patience: resume sends them
    experiment_id: str = ""  # the study's MLflow experiment

    @property
    def done(self) -> bool:
        """Every planned trial complete or stopped early, and all of it in MLflow."""
        return self.complete + self.stopped == self.planned and not self.untracked


def run_study(
    space: SearchSpace,
    study_plan: StudyPlan,
    address: str | None = None,
    resume: bool = False,
    warm_from: str | None = None,
    dashboard: bool = False,
) -> StudyOutcome:
    """Run the study, or with ``resume`` continue it (``Tuner.restore``: completed trials
    stay done, unfinished ones resume from their checkpoints, the searcher keeps its
    state). ``warm_from``: an earlier study whose complete trials the sampler starts
    from (:mod:`study.service.warmstart`). ``dashboard``: give a new local Ray
    instance its dashboard (a cluster has its own)."""
    from study.service.progress import StudyProgress

    settings: StudySettings = space.settings
    quiet_urllib3()
    with environment(**_tune_environment(study_plan, address)):
        _check_new_or_resumable(study_plan, resume)
        leave_ray_working_dir()  # every path is absolute by now
        connect(ray_address(address), dashboard)
        check_resources(settings.cpus, settings.gpus)
        warn_if_tracking_is_local(study_plan.tracking_uri)
        parent, experiment_id = _start_parent(space, study_plan)
        progress = StudyProgress(
            study_plan.trials, dict(settings.objectives), study_plan.tracking_uri, parent
        )
        if resume:
            tuner, scheduler = restored_tuner(space, study_plan, parent, progress)
        else:
            tuner, scheduler = fresh_tuner(space, study_plan, parent, progress, warm_from)
        results = _fit(tuner, study_plan, parent)
        outcome = _outcome(results, study_plan.trials, _stopped(results, scheduler))
        if resume and not outcome.unfinished:  # interrupted: the queue waits for next resume
            fail_requeued_trials(study_plan)
        held = _close_tracking(progress, study_plan, parent, results, outcome, scheduler)
    return replace(outcome, untracked=held, experiment_id=experiment_id)


def _tune_environment(study_plan: StudyPlan, address: str | None) -> dict[str, str]:
    """The environment Tune and the workers read while the study runs (set by
    :func:`run_study` for its duration, then put back)."""
    values = {
        # Epoch reports carry per-epoch metrics only; the objectives arrive with the
        # final report, which is the one Optuna reads.
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
        # Tune's own per-trial result files only when asked for (_result_loggers):
        # MLflow has every metric. Tune adds each default logger that is missing unless
        # told not to.
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        # Checkpoints at every epoch (STUDY_CHECKPOINT_INTERVAL_S=0) force a snapshot of
        # the experiment each time; that is asked for, so don't warn about it.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": os.environ.get(
            "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0"
        ),
        SNAPSHOT_PERIOD: snapshot_period(study_plan.trials),
        # MLflow requests fail fast; the relay and the driver's patient steps wait.
        **request_settings(),
    }
    if has_secret(study_plan.optuna_storage):  # pickled storages reveal it from here
        values["STUDY_OPTUNA_STORAGE"] = study_plan.optuna_storage
    if runs_locally(address) and has_secret(study_plan.tracking_uri):
        # the local workers inherit it, and reveal it there
        values["MLFLOW_TRACKING_URI"] = study_plan.tracking_uri
    return values


def _start_parent(space: SearchSpace, study_plan: StudyPlan) -> tuple[str, str]:
    """The study's parent MLflow run (created, or found on resume) and its experiment
    id; the space is recorded with credentials redacted (study.secrets)."""
    document = space.document()
    document["study"].update(
        storage_path=study_plan.storage_path,
        optuna_storage=redact(study_plan.optuna_storage),
        tracking_uri=redact(study_plan.tracking_uri),
        experiment=study_plan.experiment,
    )
    parent = start_parent(
        study_plan.tracking_uri,
        study_plan.experiment,
        study_plan.name,
        _parent_params(space, study_plan),
        study_plan.space_file,
        document,
        tags={SIMULATED_TAG: "true"} if space.simulated() else None,
    )
    experiment_id = PatientClient(study_plan.tracking_uri).get_run(parent).info.experiment_id
    return parent, experiment_id


def _fit(tuner, study_plan: StudyPlan, parent: str):
    """``tuner.fit()``; the parent run marked FAILED if it raises."""
    try:
        return tuner.fit()
    except BaseException:
        _mark_parent_failed(study_plan.tracking_uri, parent)
        raise


def _close_tracking(
    progress,
    study_plan: StudyPlan,
    parent: str,
    results,
    outcome: StudyOutcome,
    scheduler: MultiObjectiveASHA | None,
) -> int:
    """Close the runs of unfinished trials and set the parent's status, through the
    driver's relay (which waits out a tracking outage up to the patience). Returns the
    records MLflow has not taken (kept with the checkpoints for ``study resume``)."""
    status = "FINISHED" if outcome.done else "KILLED" if outcome.unfinished else "FAILED"
    counts = {"complete": outcome.complete, "failed": outcome.failed}
    if scheduler is not None:
        counts["stopped"] = outcome.stopped
    stopped = _stopped(results, scheduler)
    relay = progress.writes()
    relay.call(
        "close_unfinished",
        parent_id=parent,
        known_trials={_trial_id(r) for r in results},
        unfinished_trials={_trial_id(r) for r in results if _unfinished(r, stopped)},
    )
    relay.call("set_parent_status", parent_id=parent, status=status, counts=counts)
    if relay.pending() and relay.down_since is not None:
        print(
            f"study: writing what MLflow has not taken yet ({relay.pending()} records; "
            f"waiting up to {relay.patience:.0f} s, STUDY_TRACKING_PATIENCE_S)",
            flush=True,
        )
    held = relay.close()
    if held:
        print(
            f"study {study_plan.name}: {held} records not in MLflow: "
            f"{redact(study_plan.tracking_uri)} unreachable for longer than the patience; "
            f"they are kept with the trials' checkpoints: `study resume {study_plan.name}` "
            "writes them once the server is back",
            flush=True,
        )
    return held


def _mark_parent_failed(uri: str, parent: str) -> None:
    """The parent run FAILED after ``fit`` raised: one request, no retries, and never an
    error of its own (the one being raised is what the user must see; with MLflow away
    the parent stays RUNNING, and `study resume` sets it again)."""
    try:
        with fail_fast():
            set_parent_status(uri, parent, "FAILED", {})
    except Exception as error:
        print(
            f"study: could not mark the parent run {parent} FAILED ({error_gist(error)})",
            flush=True,
        )


def _check_new_or_resumable(study_plan: StudyPlan, resume: bool) -> None:
    """``run`` needs a new name (in Tune, MLflow and Optuna); ``resume`` an experiment."""
    from ray import tune

    try:
        restorable = tune.Tuner.can_restore(study_plan.experiment_path)
    except Exception as error:  # e.g. a storage URI pyarrow cannot open
        raise ConfigError(
            "study.storage_path", f"cannot read {study_plan.storage_path}: {error_gist(error)}"
        ) from None
    if resume:
        if not restorable:
            raise ConfigError(
                "name", f"nothing to resume at {study_plan.experiment_path} (no Tune experiment)"
            )
        return
    if (
        restorable
        or parent_run(PatientClient(study_plan.tracking_uri), study_plan.name)
        or _optuna_study_exists(study_plan)
    ):
        raise ConfigError(
            "study.name",
            f"a study named {study_plan.name!r} exists already; continue it with "
            f"`study resume {study_plan.name}` or pick another --name",
        )


def _optuna_study_exists(study_plan: StudyPlan) -> bool:
    import optuna

    url = study_plan.optuna_storage
    if "://" not in url and not Path(url).is_file():
        return False
    names = optuna.study.get_all_study_names(storage=optuna_storage(url))
    return study_plan.name in names


def _stopped(results, scheduler: MultiObjectiveASHA | None) -> set[str]:
    """The trials the scheduler stopped early at a rung."""
    if scheduler is None:
        return set()
    return {_trial_id(r) for r in results if scheduler.stopped(_trial_id(r))}


def _trial_id(result) -> str:
    return Path(result.path).name.removeprefix("trial_")


def _unfinished(result, stopped: set[str]) -> bool:
    """Neither complete, failed nor stopped early: interrupted (``study resume``)."""
    return (
        result.error is None
        and not result.metrics.get("complete")
        and _trial_id(result) not in stopped
    )


def _outcome(results, planned: int, stopped: set[str]) -> StudyOutcome:
    unfinished = sum(1 for r in results if _unfinished(r, stopped))
    return StudyOutcome(
        planned=planned,
        complete=sum(1 for r in results if r.error is None and r.metrics.get("complete")),
        failed=sum(1 for r in results if r.error is not None),
        unfinished=unfinished + max(0, planned - len(results)),
        stopped=len(stopped),
    )


def _parent_params(space: SearchSpace, study_plan: StudyPlan) -> dict[str, Any]:
    settings = asdict(space.settings)
    settings["objectives"] = ",".join(f"{m}:{d}" for m, d in space.settings.objectives.items())
    scheduler = space.settings.scheduler
    settings["scheduler"] = scheduler.describe() if scheduler else None
    settings["trials"] = study_plan.trials
    settings.update(
        tracking_uri=redact(study_plan.tracking_uri),
        optuna_storage=redact(study_plan.optuna_storage),
        storage_path=study_plan.storage_path,
    )
    return {f"study.{k}": v for k, v in settings.items()}
