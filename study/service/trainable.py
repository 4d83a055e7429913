"""What runs on the workers: Optuna's define-by-run function and the Ray Tune trainable.

:func:`trainable` resumes from Tune's checkpoint if there is one, runs
:func:`study.trial.run_trial` in the trial's folder, reports every epoch to Tune (with a
checkpoint when :class:`CheckpointPolicy` says so, so a retried trial resumes from there)
and logs every epoch to the trial's MLflow child run, once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.metrics.names import describe_family
from study.mlflow_layout import SIMULATED_TAG
from study.secrets import reveal
from study.service.outbox import PENDING, SPOOL, TrialLogger
from study.service.pruning import MLFLOW_RUN_ID
from study.service.space import SearchSpace


class DefineByRun:
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


@dataclass
class CheckpointPolicy:
    """Which epoch reports hand Tune a checkpoint: the last epoch, every rung of the
    early-stopping scheduler (a stopped trial's rung is never trained twice), and any
    epoch ``every_s`` seconds or more after the previous checkpoint (``0``: every epoch).

    Each checkpoint Tune registers may force a snapshot of the whole experiment (Tune
    does so once a trial has checkpointed ``num_to_keep`` times since the last one), and
    a snapshot serialises every trial: one per epoch made a 1,000-trial study's driver
    O(n) per epoch (docs/SCALE.md). The trial still writes its own checkpoint file every
    epoch (it is how ``run_trial`` resumes within an attempt); Tune only holds fewer.

    >>> policy = CheckpointPolicy.from_params(10, {"every_s": 3600, "rungs": [1, 3]})
    >>> [epoch for epoch in range(1, 11) if policy.due(epoch)]
    [1, 3, 9, 10]
    """

    epochs: int
    every_s: float = 0.0
    rungs: frozenset[int] = frozenset()
    last: float = field(default_factory=time.monotonic)

    @classmethod
    def from_params(cls, epochs: int, settings: Mapping[str, Any] | None) -> CheckpointPolicy:
        """From the study's ``checkpoints`` constants: ``every_s`` and ``rungs`` (MO-ASHA's
        ``[grace, eta]``: rungs at ``grace * eta**k``; every bracket's rungs are among
        them). None (a study recorded before this policy): every epoch."""
        settings = settings or {}
        rungs: set[int] = set()
        if settings.get("rungs"):
            grace, eta = (int(v) for v in settings["rungs"])
            rung = grace
            while rung < epochs:
                rungs.add(rung)
                rung *= eta
        return cls(epochs, float(settings.get("every_s", 0.0)), frozenset(rungs))

    def due(self, epoch: int | None) -> bool:
        """Whether the report of ``epoch`` carries a checkpoint."""
        if epoch is None or epoch >= self.epochs or epoch in self.rungs:
            return True
        return time.monotonic() - self.last >= self.every_s

    def saved(self) -> None:
        self.last = time.monotonic()


def trainable(params: dict[str, Any]) -> None:
    """One Ray Tune trial: resume from Tune's checkpoint if there is one, train, report
    every epoch (with a checkpoint when :class:`CheckpointPolicy` says so), log each
    epoch to the trial's MLflow child run once."""
    import socket

    import ray
    from ray import tune

    from study.trial.config import from_mapping
    from study.trial.run import CHECKPOINT, TrialFailed, pin_threads, run_trial

    host = socket.gethostname()
    started_at = time.time()
    # A request to a tracking server that is away fails at once rather than after
    # MLflow's own retries: the trial's outbox holds it and training goes on.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    quiet_urllib3()
    context = tune.get_context()
    trial_id = context.get_trial_id()
    # Exactly the CPUs Tune reserved, whatever OMP_NUM_THREADS says (Ray sets it only
    # where the user has not; two trials of 2 threads each on 2 cores thrash).
    reserved = context.get_trial_resources().required_resources.get("CPU", 1)
    threads = pin_threads(int(reserved))
    print(
        f"trial {trial_id}: {threads} torch thread(s) for the {reserved:g} CPU(s) Ray "
        f"reserved (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} ignored)",
        flush=True,
    )
    work = Path(context.get_trial_dir()) / "trial"
    work.mkdir(parents=True, exist_ok=True)
    restored = tune.get_checkpoint()
    spooled = work / "tracking-restored"
    shutil.rmtree(spooled, ignore_errors=True)
    if restored is not None:
        with restored.as_directory() as folder:
            shutil.copy(Path(folder) / CHECKPOINT, work / CHECKPOINT)
            if (Path(folder) / SPOOL).is_dir():  # records an earlier attempt could not send
                shutil.copytree(Path(folder) / SPOOL, spooled)
    config = from_mapping(params["trial"])
    tracking = params["tracking"]
    uri = reveal(tracking["uri"], "study.tracking_uri")  # recorded redacted, if it had a secret
    logger = TrialLogger(
        uri,
        parent=tracking["parent"],
        trial_id=trial_id,
        name=context.get_trial_name(),
        work=work,
    )
    if spooled.is_dir():
        logger.load(spooled)
    # Which node ran it (the latest attempt, if it was retried elsewhere), and when it
    # started by this node's clock.
    logger.tags(
        {
            "study.node_id": ray.get_runtime_context().get_node_id(),
            "study.host": host,
            "study.threads": str(threads),
            "study.optuna_trial": str(params.get("optuna_trial", "")),
            "study.started_at": f"{started_at:.3f}",
            **({SIMULATED_TAG: "true"} if config.simulate.enabled else {}),
            **{
                f"study.shift.{family}": describe_family(
                    family, config.eval.crop_margin, config.eval.subpixel_steps
                )
                for family in config.eval.families
            },
        }
    )
    logger.dataset(dataclasses.asdict(config.data))
    searched = {f"optuna.{_param_key(k)}": v for k, v in params.get("searched", {}).items()}
    logger.params({**config.flat(), **_filter_params(config.model.filter), **searched})
    # A checkpoint from Tune, or one a stopped attempt left in this folder: run_trial
    # resumes from it, so log the epochs it holds that an attempt never logged (the
    # run's own epochs are never logged twice: the outbox skips what it holds).
    resuming = (work / CHECKPOINT).is_file()
    if resuming:
        from study.trial.checkpoint import checkpoint_history

        history = checkpoint_history(work / CHECKPOINT)
        logger.backfill(history)
        if restored is None and history:
            # Newer than anything Tune holds (a driver killed before Tune's snapshot took
            # this trial's checkpoint): report its epochs, so that an early-stopping
            # scheduler judges every rung once, as in an uninterrupted run. It may stop
            # the trial right here.
            _replay(history, work)

    resumed: list = []
    policy = CheckpointPolicy.from_params(config.train.epochs, params.get("checkpoints"))

    def report(row: dict[str, Any]) -> None:
        from ray.tune import Checkpoint

        complete = row.pop("done")  # Tune reads a reported "done" as "stop this trial now"
        epoch = row.get("epoch")
        if resuming and not resumed and epoch is not None:
            resumed.append(epoch)  # the first epoch this attempt trained
            logger.tags({"study.resumed_at_epoch": str(resumed[0])})
        if complete:
            logger.final(row, work)  # before Tune hears of the end, which may stop us
        # Epoch rows go to Tune whole: a trial the scheduler stops at a rung never gets
        # past this report, and the driver logs that epoch from Tune's copy
        # (tracking.mark_pruned). The final row, the one with most values, is trimmed.
        metrics = tune_metrics(row, params.get("tune_metrics") if complete else None)
        if logger.run_id is not None:  # for the Optuna trial (study.service.pruning)
            metrics[MLFLOW_RUN_ID] = logger.run_id
        metrics["complete"] = complete
        overdue = logger.overdue()
        if complete or overdue or policy.due(epoch):
            with tempfile.TemporaryDirectory(dir=work.parent) as folder:
                _link_or_copy(work / CHECKPOINT, Path(folder) / CHECKPOINT)
                # What MLflow has not taken yet travels with the checkpoint: a retry
                # sends it first, and the driver sends a finished trial's.
                metrics[PENDING] = logger.spool(Path(folder) / SPOOL)
                tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            policy.saved()
        else:
            tune.report(metrics)
        if not complete:
            # After Tune has the report: a trial stopped right there (at a rung) has the
            # epoch logged by the driver from Tune's copy.
            logger.epoch(row)
        if overdue and not complete:  # its records are in the checkpoint just reported
            raise logger.outbox.timeout()
        # A trial that completed ends as completed: the driver's relay sends its spool.

    try:
        if not resuming and not config.simulate.enabled:
            logger.filter_figure(config.model.filter)
        keep_model = logger.model if config.eval.log_model else None
        run_trial(
            config, work, report=report, progress=False, threads=threads, keep_model=keep_model
        )
    except TrialFailed as error:
        logger.tags({"study.last_error": error.reason[:500]})  # Tune may retry it
        raise


def quiet_urllib3() -> None:
    """No urllib3 warning per failed request while the tracking server is away: the
    outbox says it once."""
    import logging

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def tune_metrics(row: Mapping[str, Any], names: list[str] | None) -> dict[str, Any]:
    """The values of ``row`` that Tune hears of: ``names`` (the objectives, the
    scheduler's per-epoch metrics, what progress lines show, ``epoch``), or every scalar
    when ``names`` is None (epoch rows, and a study recorded before). MLflow gets the
    whole row; Tune keeps running statistics of each number it is told, per trial, in
    every experiment snapshot, so the final row (some 25 values) is trimmed.

    >>> tune_metrics({"epoch": 2, "val_acc": 0.5, "train_seconds": 3.1}, ["epoch", "val_acc"])
    {'epoch': 2, 'val_acc': 0.5}
    """
    scalars = {k: v for k, v in row.items() if isinstance(v, int | float | str | bool)}
    if names is None:
        return scalars
    wanted = set(names)
    return {k: v for k, v in scalars.items() if k in wanted}


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no bytes copied), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


def _replay(history: list[dict[str, Any]], work: Path) -> None:
    """Report to Tune the epochs of a checkpoint Tune never saw, the last one with it."""
    from ray import tune
    from ray.tune import Checkpoint

    from study.trial.run import CHECKPOINT

    for index, row in enumerate(history):
        metrics = tune_metrics(row, None)  # epoch rows go whole (see `report`)
        metrics["complete"] = False
        if index < len(history) - 1:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(work / CHECKPOINT, Path(folder) / CHECKPOINT)
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def _param_key(name: str) -> str:
    """An Optuna parameter name as an MLflow param key (no brackets allowed there):
    ``model.filter[firwin].cutoff`` -> ``model.filter.firwin.cutoff``."""
    return name.replace("[", ".").replace("]", "")


def _filter_params(spec: str) -> dict[str, Any]:
    """The filter's family and tap count as their own params, for grouping in the UI."""
    from study import filters

    info = filters.describe(spec)
    return {"filter.family": info["family"], "filter.taps": info["taps"]}
