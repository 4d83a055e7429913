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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from study.space import SearchSpace, StudySettings
from study.tracking import (
    TrialLogger,
    check_tracking,
    start_parent,
    tracking_uri,
    trial_run,
)


@dataclass(frozen=True)
class StudyPlan:
    """Everything resolved before anything starts."""

    name: str
    space_file: Path
    storage_path: Path
    optuna_storage: str
    tracking_uri: str
    experiment: str
    metrics: list[str]
    modes: list[str]
    trials: int


def plan(space: SearchSpace, space_file: Path) -> StudyPlan:
    """Resolve storage locations, tracking URI and objectives; check the tracking store
    is reachable (one-line error otherwise)."""
    settings = space.settings
    storage_path = Path(settings.storage_path or "ray_results").expanduser().resolve()
    optuna_storage = settings.optuna_storage or str(storage_path / settings.name / "optuna.journal")
    uri = tracking_uri(settings.tracking_uri)
    check_tracking(uri)
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
        return optuna.samplers.GPSampler(seed=seed)
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
        return {"trial": self.space.sample(trial), **self.constants}


def _trainable(params: dict[str, Any]) -> None:
    """One Ray Tune trial: resume from Tune's checkpoint if there is one, train, report
    every epoch with a checkpoint, log to the trial's MLflow child run."""
    from ray import tune

    from study.config import from_mapping
    from study.trial import CHECKPOINT, TrialFailed, run_trial

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
    searched = {f"optuna.{k}": v for k, v in params.items() if k not in ("trial", "tracking")}
    logger.params({**config.flat(), **searched})

    def report(row: dict[str, Any]) -> None:
        from ray.tune import Checkpoint

        metrics = {k: v for k, v in row.items() if isinstance(v, int | float | str | bool)}
        if not row["done"]:
            logger.epoch(row)
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(work / CHECKPOINT, Path(folder) / CHECKPOINT)
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    try:
        if restored is None:
            logger.filter_figure(config.model.filter)
        final = run_trial(config, work, report=report, progress=False)
    except TrialFailed as error:
        logger.failed(error.reason)
        raise
    logger.final(final, work)


def run_study(space: SearchSpace, study_plan: StudyPlan, address: str | None = None) -> Any:
    """Run (or, with the same name and storage, continue) the study; returns Tune's
    ``ResultGrid``."""
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    settings: StudySettings = space.settings
    # Epoch reports carry per-epoch metrics only; the objectives arrive with the final
    # report, which is the one Optuna reads.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    ray.init(address=address or os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    parent = start_parent(
        study_plan.tracking_uri,
        study_plan.experiment,
        study_plan.name,
        {f"study.{k}": v for k, v in asdict(settings).items() if k != "objectives"},
        study_plan.space_file,
    )
    constants = {"tracking": {"uri": study_plan.tracking_uri, "parent": parent}}
    search = OptunaSearch(
        space=_DefineByRun(space, constants),
        metric=study_plan.metrics,
        mode=study_plan.modes,
        sampler=sampler(space),
        study_name=study_plan.name,
        storage=optuna_storage(study_plan.optuna_storage),
    )
    trainable = tune.with_resources(_trainable, {"cpu": settings.cpus, "gpu": settings.gpus})
    experiment = study_plan.storage_path / study_plan.name
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(search, max_concurrent=settings.concurrent),
                num_samples=study_plan.trials,
            ),
            run_config=tune.RunConfig(
                name=study_plan.name,
                storage_path=str(study_plan.storage_path),
                failure_config=tune.FailureConfig(max_failures=settings.retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=1,
            ),
        )
    return tuner.fit()
