"""A study's Ray Tune ``Tuner``: a new one (Optuna's searcher wrapped for pruning, the
scheduler, the callbacks in their fixed order) or the restored one with this driver's
progress callback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from study.secrets import redact
from study.service.plan import (
    StudyPlan,
)
from study.service.progress import SHOWN_METRICS
from study.service.repair import (
    known_optuna_trials,
    repair_orphaned_trials,
)
from study.service.samplers import optuna_storage, sampler
from study.service.scheduler_settings import PER_EPOCH, build_scheduler
from study.service.space import SearchSpace
from study.service.tracking import PatientClient, patiently, set_parent_status
from study.service.trainable import DefineByRun, trainable
from study.service.warmstart import prepare
from study.settings import flag_setting, seconds_setting

if TYPE_CHECKING:
    from study.service.scheduler import MultiObjectiveASHA


def trial_name(trial) -> str:
    """A trial named by what it is, ``binomial-5 / shift (3c827242)``: Tune's progress
    and the MLflow child run show it (Tune's default is ``trainable_3c827242``)."""
    from study.service.progress import describe_trial

    return f"{describe_trial(trial.config)} ({trial.trial_id})"


def trial_dirname(trial) -> str:
    """Trial folders named by trial id (Tune's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


def restored_tuner(
    space: SearchSpace, study_plan: StudyPlan, parent: str, progress
) -> tuple[Any, MultiObjectiveASHA | None]:
    """``Tuner.restore`` of the study's experiment, with this driver's progress, and the
    scheduler it restored; orphaned Optuna trials repaired."""
    from ray import tune

    uri = study_plan.tracking_uri
    patiently(
        uri, "mark the parent run RUNNING", lambda: set_parent_status(uri, parent, "RUNNING", {})
    )
    tuner = tune.Tuner.restore(study_plan.experiment_path, _resourced(space), resume_errored=True)
    scheduler = _use_progress(tuner, progress)
    known = known_optuna_trials(study_plan.experiment_path)
    repair_orphaned_trials(study_plan, known, requeue=space.settings.sampler == "grid")
    return tuner, scheduler


def fresh_tuner(
    space: SearchSpace, study_plan: StudyPlan, parent: str, progress, warm_from: str | None
) -> tuple[Any, MultiObjectiveASHA | None]:
    """A new ``Tuner`` (and its scheduler, if the space asks for one), the Optuna study
    prepared (enqueued configurations, a warm start)."""
    settings = space.settings
    scheduler = (
        build_scheduler(settings.scheduler, space.budget(), space.validation_images())
        if settings.scheduler
        else None
    )
    progress.scheduler = scheduler
    prepared = prepare(space, study_plan, warm_from)
    _log_prepared(study_plan, parent, prepared, warm_from)
    tuner = _new_tuner(space, study_plan, _resourced(space), parent, progress, scheduler)
    return tuner, scheduler


def _resourced(space: SearchSpace):
    from ray import tune

    settings = space.settings
    return tune.with_resources(trainable, {"cpu": settings.cpus, "gpu": settings.gpus})


def _log_prepared(study_plan: StudyPlan, parent: str, prepared, warm_from: str | None) -> None:
    """Say on the parent run (and the console) what the Optuna study started with."""

    client = PatientClient(study_plan.tracking_uri)
    if prepared.enqueued:
        client.log_param(parent, "study.enqueued", prepared.enqueued)
    if warm_from is not None:
        client.log_param(parent, "study.warm_start_from", warm_from)
        client.log_param(parent, "study.warm_start_trials", prepared.copied)
        skipped = ", ".join(f"{n} {why}" for why, n in prepared.skipped.items())
        print(
            f"warm start: {prepared.copied} complete trials of {warm_from} copied into "
            f"{study_plan.name}" + (f" (left out: {skipped})" if skipped else ""),
            flush=True,
        )


def _use_progress(tuner, progress) -> MultiObjectiveASHA | None:
    """Give a restored tuner this driver's progress callback, in place of the old
    driver's (``Tuner.restore`` takes no callbacks), keeping every callback where it was:
    the restored ``SchedulerState`` (if any) gets its state back by position and now
    prints through ``progress``. Returns the restored scheduler (the one Tune will use)."""
    from study.service.progress import StudyProgress
    from study.service.scheduler import SchedulerState, restored_callbacks

    callbacks = restored_callbacks(tuner)
    old = [i for i, c in enumerate(callbacks) if isinstance(c, StudyProgress)]
    if old:
        callbacks[old[0]] = progress
    else:
        callbacks.insert(0, progress)
    kinds = {type(c) for c in callbacks}
    callbacks += [c for c in _result_loggers() if type(c) not in kinds]  # at the end
    state = next((c for c in callbacks if isinstance(c, SchedulerState)), None)
    if state is None:
        return None
    state.report = progress.line
    progress.scheduler = state.scheduler
    return state.scheduler


def _result_loggers() -> list:
    """Tune's per-trial ``result.json`` and ``progress.csv`` writers, with
    ``STUDY_TUNE_RESULT_FILES=1``; none by default (MLflow has every metric).

    Tune writes them on the driver, in the folder it uploads to the storage path whole
    at every experiment snapshot, so each snapshot copied files of every trial: at
    1,000 trials that took 50 of the driver's 183 s of CPU (docs/SCALE.md). TensorBoard's
    writer is never added (7.6 of 54 s at 300 trials)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    if not flag_setting("STUDY_TUNE_RESULT_FILES"):
        return []
    return [CSVLoggerCallback(), JsonLoggerCallback()]


def _new_tuner(
    space: SearchSpace,
    study_plan: StudyPlan,
    trainable,
    parent: str,
    progress,
    scheduler: MultiObjectiveASHA | None = None,
):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from study.service.scheduler import LiveFIFOScheduler
    from study.service.searcher import PruningSearcher
    from study.service.storage import cached

    settings = space.settings
    # Trial configs are saved by Tune and shown by Ray: the URI goes redacted, a worker
    # takes the real one from its environment (secrets.reveal).
    constants = {
        "tracking": {"uri": redact(study_plan.tracking_uri), "parent": parent},
        # When trials hand Tune a checkpoint (trainable.CheckpointPolicy): decided here,
        # where the environment was checked, for every worker alike.
        "checkpoints": {
            "every_s": seconds_setting("STUDY_CHECKPOINT_INTERVAL_S"),
            "rungs": [settings.scheduler.grace, settings.scheduler.eta]
            if settings.scheduler
            else None,
        },
        # What Tune hears of each result (trainable.tune_metrics): Tune keeps statistics
        # of every number it is told, per trial, in each experiment snapshot.
        "tune_metrics": sorted(
            {*study_plan.metrics, *PER_EPOCH, *SHOWN_METRICS, "epoch", "complete"}
        ),
    }
    search = OptunaSearch(
        space=DefineByRun(space, constants),
        metric=study_plan.metrics,
        mode=study_plan.modes,
        sampler=sampler(space),
        study_name=study_plan.name,
        storage=cached(optuna_storage(study_plan.optuna_storage)),
    )
    callbacks = [progress]
    # Stopped trials reach Optuna as PRUNED, not COMPLETE with half-trained values; every
    # Optuna trial learns its MLflow run id.
    search = PruningSearcher(search, scheduler, redact(study_plan.optuna_storage), study_plan.name)
    if scheduler is not None:
        from study.service.scheduler import SchedulerState

        callbacks.append(SchedulerState(scheduler, report=progress.line))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=settings.concurrent),
            scheduler=scheduler or LiveFIFOScheduler(),
            num_samples=study_plan.trials,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_name,
            # A finished trial's worker runs the next one: no new process, no second
            # import of torch, and the dataset it loaded is still in memory.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=study_plan.name,
            storage_path=study_plan.storage_path,
            failure_config=tune.FailureConfig(max_failures=settings.retries),
            # Two, not one: the experiment snapshot on disk may still name the previous
            # checkpoint when a newer one is registered; a driver killed right then
            # must find it on resume.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # order fixed: restored states are matched by position
            callbacks=[*callbacks, *_result_loggers()],
            verbose=0,
        ),
    )
