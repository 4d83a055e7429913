"""The study service: Ray Tune runs the trials, Optuna decides what to try next, MLflow
records everything.

:func:`run_study` builds a ``Tuner`` with ``OptunaSearch`` (the space sampled
define-by-run, multi-objective through lists of metrics and modes, a seeded sampler
and a persistent Optuna storage under a unique study name), ``tune.with_resources``,
a concurrency limit and ``FailureConfig`` retries. Each trial runs
:func:`study.trial.run_trial` in its own folder and reports every epoch with a
checkpoint, so a retried trial resumes from its last epoch. No early-stopping
scheduler is used: only complete trials reach Optuna and the Pareto front.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from study.config import ConfigError
from study.paths import absolute_sqlite, default_root, leave_ray_working_dir
from study.space import SearchSpace, StudySettings
from study.tracking import (
    TrialLogger,
    check_experiment,
    check_tracking,
    close_unfinished,
    error_gist,
    find_parent,
    set_parent_status,
    start_parent,
    tracking_uri,
    trial_run,
)

#: Storage URIs Ray Tune reads and writes through pyarrow (plus fsspec's ``file``).
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "file")


@dataclass(frozen=True)
class StudyPlan:
    """Everything resolved before anything starts."""

    name: str
    space_file: Path
    storage_path: str
    optuna_storage: str
    tracking_uri: str
    experiment: str
    metrics: list[str]
    modes: list[str]
    trials: int

    @property
    def experiment_path(self) -> str:
        """Where Ray Tune keeps this study's results (a folder or a storage URI)."""
        return f"{self.storage_path.rstrip('/')}/{self.name}"


def plan(space: SearchSpace, space_file: Path, address: str | None = None) -> StudyPlan:
    """Resolve storage locations, tracking URI and objectives; check that a local Ray
    instance could hold a trial (when no cluster ``address`` or ``RAY_ADDRESS`` is
    given) and that the tracking store answers. One-line errors, nothing started."""
    settings = space.settings
    if not (address or os.environ.get("RAY_ADDRESS")):
        check_local_resources(settings.cpus, settings.gpus)
    storage_path = settings.storage_path or os.environ.get("STUDY_STORAGE_PATH") or "ray_results"
    if "://" not in storage_path:
        storage_path = str((default_root() / Path(storage_path).expanduser()).resolve())
    elif storage_path.split("://")[0] not in STORAGE_SCHEMES:
        raise ConfigError(
            "study.storage_path",
            f"{storage_path}: use a folder or a URI with scheme {', '.join(STORAGE_SCHEMES)}",
        )
    optuna_url = settings.optuna_storage or os.environ.get("STUDY_OPTUNA_STORAGE")
    if optuna_url and "://" not in optuna_url:  # a journal file
        optuna_url = str((default_root() / Path(optuna_url).expanduser()).resolve())
    elif optuna_url:
        optuna_url = absolute_sqlite(optuna_url)
    if "://" in storage_path and not optuna_url:
        raise ConfigError(
            "study.optuna_storage",
            f"storage_path {storage_path} is remote: give an RDB URL (postgresql://...) "
            "or a journal file path that every run of this study can reach",
        )
    optuna_storage = optuna_url or str(Path(storage_path) / settings.name / "optuna.journal")
    uri = tracking_uri(settings.tracking_uri)
    check_tracking(uri)
    check_experiment(uri, settings.experiment or settings.name)
    trials = space.grid_size() if settings.sampler == "grid" else settings.trials
    return StudyPlan(
        name=settings.name,
        space_file=space_file.resolve(),
        storage_path=storage_path,
        optuna_storage=optuna_storage,
        tracking_uri=uri,
        experiment=settings.experiment or settings.name,
        metrics=list(settings.objectives),
        modes=list(settings.objectives.values()),
        trials=trials,
    )


def sampler(space: SearchSpace):
    """The seeded Optuna sampler the space asks for."""
    import optuna

    settings = space.settings
    seed = settings.seed
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if settings.sampler == "gp":
        # Conditional dimensions fall back to independent (random) sampling: expected.
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


def optuna_storage(url: str):
    """An RDB URL (``postgresql://``, ``sqlite:///``, ...) or a journal file path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        return optuna.storages.RDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))


class _DefineByRun:
    """Optuna's define-by-run function: the sampled trial config plus constants.
    A class, not a closure, because Tune pickles the searcher with its checkpoints."""

    def __init__(self, space: SearchSpace, constants: dict[str, Any]) -> None:
        self.space, self.constants = space, constants

    def __call__(self, trial) -> dict[str, Any]:
        config = self.space.sample(trial)
        return {
            "trial": config,
            "searched": dict(trial.params),
            "optuna_trial": trial.number,
            **self.constants,
        }


def _trainable(params: dict[str, Any]) -> None:
    """One Ray Tune trial: resume from Tune's checkpoint if there is one, train, report
    every epoch with a checkpoint, log to the trial's MLflow child run."""
    import socket

    import ray
    from ray import tune

    from study.config import from_mapping
    from study.trial import CHECKPOINT, TrialFailed, run_trial

    host = socket.gethostname()
    context = tune.get_context()
    trial_id = context.get_trial_id()
    work = Path(context.get_trial_dir()) / "trial"
    work.mkdir(parents=True, exist_ok=True)
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            shutil.copy(Path(folder) / CHECKPOINT, work / CHECKPOINT)
    config = from_mapping(params["trial"])
    tracking = params["tracking"]
    logger = TrialLogger(
        tracking["uri"],
        trial_run(tracking["uri"], tracking["parent"], trial_id, context.get_trial_name()),
    )
    # Which node ran it (the latest attempt, if it was retried elsewhere).
    logger.tags({"study.node_id": ray.get_runtime_context().get_node_id(), "study.host": host})
    searched = {f"optuna.{_param_key(k)}": v for k, v in params.get("searched", {}).items()}
    logger.params({**config.flat(), **_filter_params(config.model.filter), **searched})
    # A checkpoint from Tune, or one a stopped attempt left in this folder: run_trial
    # resumes from it, so log the epochs it holds that an attempt never logged.
    resuming = (work / CHECKPOINT).is_file()
    if resuming:
        from study.checkpoint import load_checkpoint

        logger.backfill(load_checkpoint(work / CHECKPOINT)[1]["history"])

    resumed: list = []

    def report(row: dict[str, Any]) -> None:
        from ray.tune import Checkpoint

        complete = row.pop("done")  # Tune reads a reported "done" as "stop this trial now"
        if resuming and not resumed and row.get("epoch") is not None:
            resumed.append(row.get("epoch"))  # the first epoch this attempt trained
            logger.tags({"study.resumed_at_epoch": str(resumed[0])})
        if complete:
            logger.final(row, work)  # before Tune hears of the end, which may stop us
        metrics = {k: v for k, v in row.items() if isinstance(v, int | float | str | bool)}
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(work / CHECKPOINT, Path(folder) / CHECKPOINT)
            tune.report(
                {**metrics, "complete": complete}, checkpoint=Checkpoint.from_directory(folder)
            )
        if not complete:
            # Only once Tune holds this epoch's checkpoint: a resume never trains (and
            # logs) it again; one stopped right here is logged by `backfill` on resume.
            logger.epoch(row)

    try:
        if not resuming:
            logger.filter_figure(config.model.filter)
        run_trial(config, work, report=report, progress=False)
    except TrialFailed as error:
        logger.tags({"study.last_error": error.reason[:500]})  # Tune may retry it
        raise


def _param_key(name: str) -> str:
    """An Optuna parameter name as an MLflow param key (no brackets allowed there):
    ``model.filter[firwin].cutoff`` -> ``model.filter.firwin.cutoff``."""
    return name.replace("[", ".").replace("]", "")


def _filter_params(spec: str) -> dict[str, Any]:
    """The filter's family and tap count as their own params, for grouping in the UI."""
    from study import filters

    info = filters.describe(spec)
    return {"filter.family": info["family"], "filter.taps": info["taps"]}


def check_local_resources(cpus: float, gpus: float) -> None:
    """Like :func:`check_resources`, for the local Ray instance about to be started:
    this machine's CPU count and CUDA GPUs."""
    have_cpus = os.cpu_count() or 1
    have_gpus = 0
    if gpus:
        import torch

        have_gpus = torch.cuda.device_count()
    if gpus > have_gpus:
        raise ConfigError(
            "study.gpus", f"a trial asks for {gpus:g} GPU but this machine has {have_gpus}"
        )
    if cpus > have_cpus:
        raise ConfigError(
            "study.cpus", f"a trial asks for {cpus:g} CPU but this machine has {have_cpus}"
        )


def check_resources(cpus: float, gpus: float) -> None:
    """Fail with a one-line error when no node of the connected Ray cluster could ever
    hold one trial (Tune would otherwise wait for it forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return
    have = ", ".join(f"{n.get('CPU', 0):g} CPU + {n.get('GPU', 0):g} GPU" for n in nodes)
    field = (
        "study.gpus" if gpus and not any(n.get("GPU", 0) >= gpus for n in nodes) else "study.cpus"
    )
    raise ConfigError(
        field,
        f"a trial asks for {cpus:g} CPU + {gpus:g} GPU but no node of the cluster has that "
        f"(nodes: {have or 'none'})",
    )


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


def _warn_if_tracking_is_local(uri: str) -> None:
    """Trials log from whichever machine runs them: a tracking store in a local file
    is only shared by nodes on this machine."""
    import ray

    machines = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    if len(machines) > 1 and local:
        warnings.warn(
            f"the cluster spans {len(machines)} machines but the tracking URI {uri} is "
            "local to this one: trials elsewhere will log to their own copy. Use an "
            "MLflow server (MLFLOW_TRACKING_URI=http://...), see docs/deploy.md",
            stacklevel=2,
        )


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


def run_study(
    space: SearchSpace, study_plan: StudyPlan, address: str | None = None, resume: bool = False
) -> StudyOutcome:
    """Run the study, or with ``resume`` continue it (``Tuner.restore``: completed trials
    stay done, unfinished ones resume from their checkpoints, the searcher keeps its
    state)."""
    from ray import tune

    from study.progress import StudyProgress

    settings: StudySettings = space.settings
    # Epoch reports carry per-epoch metrics only; the objectives arrive with the final
    # report, which is the one Optuna reads.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # A checkpoint every epoch forces a snapshot of the experiment each time; that is
    # intended (a resumed study loses at most one epoch), so don't warn about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    _check_new_or_resumable(study_plan, resume)
    leave_ray_working_dir()  # every path is absolute by now
    _connect(address or os.environ.get("RAY_ADDRESS"))
    check_resources(settings.cpus, settings.gpus)
    _warn_if_tracking_is_local(study_plan.tracking_uri)
    document = space.document()
    document["study"].update(
        storage_path=study_plan.storage_path,
        optuna_storage=study_plan.optuna_storage,
        tracking_uri=study_plan.tracking_uri,
        experiment=study_plan.experiment,
    )
    parent = start_parent(
        study_plan.tracking_uri,
        study_plan.experiment,
        study_plan.name,
        _parent_params(space, study_plan),
        study_plan.space_file,
        document,
    )
    progress = StudyProgress(
        study_plan.trials, dict(settings.objectives), study_plan.tracking_uri, parent
    )
    trainable = tune.with_resources(_trainable, {"cpu": settings.cpus, "gpu": settings.gpus})
    if resume:
        set_parent_status(study_plan.tracking_uri, parent, "RUNNING", {})
        tuner = tune.Tuner.restore(study_plan.experiment_path, trainable, resume_errored=True)
        # Tuner.restore takes no callbacks; the run config it restored holds the old
        # driver's (unpicklable state dropped), so give this driver's progress instead.
        tuner._local_tuner.get_run_config().callbacks = [progress]
        fail_orphaned_trials(study_plan, _known_optuna_trials(study_plan.experiment_path))
    else:
        tuner = _new_tuner(space, study_plan, trainable, parent, progress)
    try:
        results = tuner.fit()
    except BaseException:
        set_parent_status(study_plan.tracking_uri, parent, "FAILED", {})
        raise
    outcome = _outcome(results, study_plan.trials)
    close_unfinished(
        study_plan.tracking_uri,
        parent,
        {_trial_id(r) for r in results},
        {_trial_id(r) for r in results if _unfinished(r)},
    )
    if outcome.complete == outcome.planned:
        status = "FINISHED"
    else:
        status = "KILLED" if outcome.unfinished else "FAILED"
    counts = {"complete": outcome.complete, "failed": outcome.failed}
    set_parent_status(study_plan.tracking_uri, parent, status, counts)
    return outcome


def _new_tuner(space: SearchSpace, study_plan: StudyPlan, trainable, parent: str, progress):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    settings = space.settings
    constants = {"tracking": {"uri": study_plan.tracking_uri, "parent": parent}}
    search = OptunaSearch(
        space=_DefineByRun(space, constants),
        metric=study_plan.metrics,
        mode=study_plan.modes,
        sampler=sampler(space),
        study_name=study_plan.name,
        storage=optuna_storage(study_plan.optuna_storage),
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=settings.concurrent),
            num_samples=study_plan.trials,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=study_plan.name,
            storage_path=study_plan.storage_path,
            failure_config=tune.FailureConfig(max_failures=settings.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress],
            verbose=0,
        ),
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
        or find_parent(study_plan.tracking_uri, study_plan.name)
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


def _connect(address: str | None) -> None:
    import ray

    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        field = "--address" if address else "ray"
        raise ConfigError(
            field, f"cannot connect to Ray at {address}: {error_gist(error)}"
        ) from None


def _trial_id(result) -> str:
    return Path(result.path).name.removeprefix("trial_")


def _unfinished(result) -> bool:
    return result.error is None and not result.metrics.get("complete")


def _outcome(results, planned: int) -> StudyOutcome:
    return StudyOutcome(
        planned=planned,
        complete=sum(1 for r in results if r.error is None and r.metrics.get("complete")),
        failed=sum(1 for r in results if r.error is not None),
        unfinished=sum(1 for r in results if _unfinished(r)) + max(0, planned - len(results)),
    )


def _known_optuna_trials(experiment_path: str) -> set:
    """The Optuna trial numbers of every trial in Tune's saved experiment, pending ones
    included (a ``ResultGrid`` leaves a trial's config empty until it reports)."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(experiment_path).trials
    except (RuntimeError, ValueError):  # killed before Tune's first snapshot: no trials
        return set()
    return {trial.config.get("optuna_trial") for trial in trials}


def _parent_params(space: SearchSpace, study_plan: StudyPlan) -> dict[str, Any]:
    settings = asdict(space.settings)
    settings["objectives"] = ",".join(f"{m}:{d}" for m, d in space.settings.objectives.items())
    settings["trials"] = study_plan.trials
    settings.update(
        tracking_uri=study_plan.tracking_uri,
        optuna_storage=study_plan.optuna_storage,
        storage_path=study_plan.storage_path,
    )
    return {f"study.{k}": v for k, v in settings.items()}
