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
Optuna as PRUNED (:class:`~study.service.pruning.PruningSearcher`), its MLflow child run
ends ``KILLED`` with tag ``study.pruned`` (:func:`~study.service.tracking.mark_pruned`),
and it never enters a front. The scheduler's state travels with Tune's experiment
snapshots (:class:`~study.service.scheduler.SchedulerState`), so ``study resume``
carries on with the decisions taken so far. Callback order is fixed: ``[StudyProgress,
SchedulerState]`` (Tune matches restored callback states by position).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.inputs import environment, flag_setting, seconds_setting
from study.mlflow_layout import SIMULATED_TAG, error_gist, fail_fast, parent_run
from study.paths import leave_ray_working_dir
from study.secrets import has_secret, redact
from study.service.plan import (
    SNAPSHOT_PERIOD,
    StudyPlan,
    check_resources,
    ray_address,
    runs_locally,
    snapshot_period,
)
from study.service.progress import SHOWN_METRICS
from study.service.repair import (
    fail_requeued_trials,
    known_optuna_trials,
    repair_orphaned_trials,
)
from study.service.samplers import optuna_storage, sampler
from study.service.space import SearchSpace, StudySettings
from study.service.stopping import PER_EPOCH, build_scheduler
from study.service.tracking import set_parent_status, start_parent
from study.service.trainable import DefineByRun, trainable
from study.service.warmstart import prepare
from study.trial.config import ConfigError

if TYPE_CHECKING:
    from study.service.scheduler import MultiObjectiveASHA


def _warn_if_tracking_is_local(uri: str) -> None:
    """Trials log from whichever machine runs them: a tracking store in a local file
    is only shared by nodes on this machine."""
    import ray

    machines = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    if len(machines) > 1 and local:
        warnings.warn(
            f"the cluster spans {len(machines)} machines but the tracking URI {redact(uri)} is "
            "local to this one: trials elsewhere will log to their own copy. Use an "
            "MLflow server (MLFLOW_TRACKING_URI=http://...), see docs/deploy.md",
            stacklevel=2,
        )


def _trial_name(trial) -> str:
    """A trial named by what it is, ``binomial-5 / shift (3c827242)``: Tune's progress
    and the MLflow child run show it (Tune's default is ``trainable_3c827242``)."""
    from study.service.progress import describe_trial

    return f"{describe_trial(trial.config)} ({trial.trial_id})"


def _trial_dirname(trial) -> str:
    """Trial folders named by trial id (Tune's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


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
    import mlflow
    from ray import tune

    from study.service.progress import StudyProgress

    settings: StudySettings = space.settings
    # Epoch reports carry per-epoch metrics only; the objectives arrive with the final
    # report, which is the one Optuna reads.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Tune's own per-trial result files only when asked for (_result_loggers): MLflow has
    # every metric. Tune adds each default logger that is missing unless told not to.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Checkpoints at every epoch (STUDY_CHECKPOINT_INTERVAL_S=0) force a snapshot of the
    # experiment each time; that is asked for, so don't warn about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if has_secret(study_plan.optuna_storage):  # pickled storages reveal it from here
        os.environ["STUDY_OPTUNA_STORAGE"] = study_plan.optuna_storage
    _check_new_or_resumable(study_plan, resume)
    leave_ray_working_dir()  # every path is absolute by now
    _connect(ray_address(address), study_plan.tracking_uri, dashboard)
    check_resources(settings.cpus, settings.gpus)
    _warn_if_tracking_is_local(study_plan.tracking_uri)
    document = space.document()
    document["study"].update(  # written down: credentials redacted (study.secrets)
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
    experiment_id = mlflow.MlflowClient(study_plan.tracking_uri).get_run(parent).info.experiment_id
    progress = StudyProgress(
        study_plan.trials, dict(settings.objectives), study_plan.tracking_uri, parent
    )
    resourced = tune.with_resources(trainable, {"cpu": settings.cpus, "gpu": settings.gpus})
    if resume:
        set_parent_status(study_plan.tracking_uri, parent, "RUNNING", {})
        tuner = tune.Tuner.restore(study_plan.experiment_path, resourced, resume_errored=True)
        scheduler = _use_progress(tuner, progress)
        known = known_optuna_trials(study_plan.experiment_path)
        repair_orphaned_trials(study_plan, known, requeue=settings.sampler == "grid")
    else:
        scheduler = (
            build_scheduler(settings.scheduler, space.budget(), space.validation_images())
            if settings.scheduler
            else None
        )
        progress.scheduler = scheduler
        prepared = prepare(space, study_plan, warm_from)
        _log_prepared(study_plan, parent, prepared, warm_from)
        tuner = _new_tuner(space, study_plan, resourced, parent, progress, scheduler)
    try:
        with environment(**{SNAPSHOT_PERIOD: snapshot_period(study_plan.trials)}):
            results = tuner.fit()
    except BaseException:
        _mark_parent_failed(study_plan.tracking_uri, parent)
        raise
    stopped = {_trial_id(r) for r in results if scheduler and scheduler.stopped(_trial_id(r))}
    outcome = _outcome(results, study_plan.trials, stopped)
    if resume and not outcome.unfinished:  # interrupted: the queue waits for the next resume
        fail_requeued_trials(study_plan)
    status = "FINISHED" if outcome.done else "KILLED" if outcome.unfinished else "FAILED"
    counts = {"complete": outcome.complete, "failed": outcome.failed}
    if scheduler is not None:
        counts["stopped"] = outcome.stopped
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
        outcome = replace(outcome, untracked=held)
    return replace(outcome, experiment_id=experiment_id)


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


def _log_prepared(study_plan: StudyPlan, parent: str, prepared, warm_from: str | None) -> None:
    """Say on the parent run (and the console) what the Optuna study started with."""
    import mlflow

    client = mlflow.MlflowClient(study_plan.tracking_uri)
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

    from study.service.pruning import PruningSearcher
    from study.service.scheduler import LiveFIFOScheduler
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
            trial_dirname_creator=_trial_dirname,
            trial_name_creator=_trial_name,
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


def _check_new_or_resumable(study_plan: StudyPlan, resume: bool) -> None:
    """``run`` needs a new name (in Tune, MLflow and Optuna); ``resume`` an experiment."""
    import mlflow
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
        or parent_run(mlflow.MlflowClient(study_plan.tracking_uri), study_plan.name)
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


def _starts_an_instance(address: str | None) -> bool:
    """Whether ``ray.init(address)`` starts a new local instance rather than joining a
    cluster (``local``, or no address and no ``ray start`` cluster on this machine)."""
    if address == "local":
        return True
    if address is not None:
        return False
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(None) is None
    except Exception:  # Ray's lookup changed or failed: let ray.init decide, as before
        return False


def _connect(address: str | None, tracking_uri: str, dashboard: bool = False) -> None:
    import ray

    if runs_locally(address):  # on this machine: first end what a killed study left
        from study.service.cleanup import reap_orphaned_ray_processes

        for leftover in reap_orphaned_ray_processes():
            print(f"study: ended {leftover}, left by a killed Ray instance", flush=True)
        if has_secret(tracking_uri):  # the local workers inherit it, and reveal it there
            os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    # A private instance lives as long as the study: its dashboard (a process that
    # starts in seconds and polls on, taking CPU from the trials) only when asked.
    dashboard = {"include_dashboard": dashboard} if _starts_an_instance(address) else {}
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            log_to_driver=False,
            # Ray resets its logger's level to this: keep what study.service.quiet set
            logging_level=logging.getLogger("ray").getEffectiveLevel(),
            **dashboard,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        if address is None:  # Ray found a `ray start` cluster on this machine, and failed
            raise ConfigError(
                "ray",
                f"cannot join the Ray cluster running on this machine ({error_gist(error)});"
                " `ray stop` it, or pass --address local for a private instance",
            ) from None
        raise ConfigError(
            "--address", f"cannot connect to Ray at {address}: {error_gist(error)}"
        ) from None


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
