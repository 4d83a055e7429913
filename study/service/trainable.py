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
from study.service.searcher import MLFLOW_RUN_ID
from study.service.space import SearchSpace
from study.service.tracking import quiet_urllib3, request_settings
from study.settings import environment

_RESTORED_SPOOL = "tracking-restored"  # in the trial folder: records an earlier attempt held


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
    from ray import tune

    from study.trial.config import from_mapping
    from study.trial.run import TrialFailed, run_trial

    started_at = time.time()
    context = tune.get_context()
    threads = _pin_reserved_threads(context)
    work = Path(context.get_trial_dir()) / "trial"
    from_tune = _restore_checkpoint(work)
    config = from_mapping(params["trial"])
    quiet_urllib3()
    with environment(**request_settings()):
        logger = _open_logger(params["tracking"], context, work)
        _record_trial(logger, params, config, threads, started_at)
        resuming = _backfill(logger, work, replay=not from_tune)
        report = EpochReporter(
            logger,
            work,
            CheckpointPolicy.from_params(config.train.epochs, params.get("checkpoints")),
            resuming=resuming,
            final_metrics=params.get("tune_metrics"),
        )
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


def _pin_reserved_threads(context) -> int:
    """Exactly the CPUs Tune reserved, whatever OMP_NUM_THREADS says (Ray sets it only
    where the user has not; two trials of 2 threads each on 2 cores thrash)."""
    from study.trial.run import pin_threads

    reserved = context.get_trial_resources().required_resources.get("CPU", 1)
    threads = pin_threads(int(reserved))
    print(
        f"trial {context.get_trial_id()}: {threads} torch thread(s) for the {reserved:g} "
        f"CPU(s) Ray reserved (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
        "ignored)",
        flush=True,
    )
    return threads


def _restore_checkpoint(work: Path) -> bool:
    """Copy Tune's checkpoint of this trial, if it holds one, into ``work`` (created
    here), with the records an earlier attempt could not send to MLflow (into
    ``work/tracking-restored``). Returns whether Tune held one."""
    from ray import tune

    from study.trial.run import CHECKPOINT

    work.mkdir(parents=True, exist_ok=True)
    spooled = work / _RESTORED_SPOOL
    shutil.rmtree(spooled, ignore_errors=True)
    restored = tune.get_checkpoint()
    if restored is None:
        return False
    with restored.as_directory() as folder:
        shutil.copy(Path(folder) / CHECKPOINT, work / CHECKPOINT)
        if (Path(folder) / SPOOL).is_dir():
            shutil.copytree(Path(folder) / SPOOL, spooled)
    return True


def _open_logger(tracking: Mapping[str, str], context, work: Path) -> TrialLogger:
    """The trial's MLflow child run (through its outbox), holding what an earlier
    attempt left unsent."""
    uri = reveal(tracking["uri"], "study.tracking_uri")  # recorded redacted, if it had a secret
    logger = TrialLogger(
        uri,
        parent=tracking["parent"],
        trial_id=context.get_trial_id(),
        name=context.get_trial_name(),
        work=work,
    )
    if (work / _RESTORED_SPOOL).is_dir():
        logger.load(work / _RESTORED_SPOOL)
    return logger


def _record_trial(
    logger: TrialLogger, params: Mapping[str, Any], config, threads: int, started_at: float
) -> None:
    """What the child run says of the trial before it trains: which node ran it (the
    latest attempt, if it was retried elsewhere) and when it started by this node's
    clock, its shifts, dataset, config and the values Optuna sampled."""
    import socket

    import ray

    logger.tags(
        {
            "study.node_id": ray.get_runtime_context().get_node_id(),
            "study.host": socket.gethostname(),
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


def _backfill(logger: TrialLogger, work: Path, replay: bool) -> bool:
    """With a checkpoint in ``work`` (from Tune, or one a stopped attempt left in this
    folder), log the epochs it holds that no attempt logged (the outbox skips what it
    holds, so no epoch is logged twice); with ``replay`` (the checkpoint is newer than
    anything Tune holds: a driver killed before Tune's snapshot took it) also report
    them to Tune, so that an early-stopping scheduler judges every rung once, as in an
    uninterrupted run (it may stop the trial right here). Returns whether ``run_trial``
    will resume."""
    from study.trial.checkpoint import checkpoint_history
    from study.trial.run import CHECKPOINT

    if not (work / CHECKPOINT).is_file():
        return False
    history = checkpoint_history(work / CHECKPOINT)
    logger.backfill(history)
    if replay and history:
        _replay(history, work)
    return True


class EpochReporter:
    """``run_trial``'s ``report``: each epoch to Tune (with a checkpoint when the policy
    says so, or when MLflow has held records for too long) and to the MLflow child run,
    in the order that keeps every epoch logged once even when the scheduler stops the
    trial at this report."""

    def __init__(
        self,
        logger: TrialLogger,
        work: Path,
        policy: CheckpointPolicy,
        resuming: bool,
        final_metrics: list[str] | None,
    ) -> None:
        self.logger, self.work, self.policy = logger, work, policy
        self.resuming, self.final_metrics = resuming, final_metrics
        self.resumed_at: int | None = None  # the first epoch this attempt trained

    def __call__(self, row: dict[str, Any]) -> None:
        complete = row.pop("done")  # Tune reads a reported "done" as "stop this trial now"
        epoch = row.get("epoch")
        if self.resuming and self.resumed_at is None and epoch is not None:
            self.resumed_at = epoch
            self.logger.tags({"study.resumed_at_epoch": str(epoch)})
        if complete:
            self.logger.final(row, self.work)  # before Tune hears of the end, which may stop us
        overdue = self.logger.overdue()
        checkpoint = complete or overdue or self.policy.due(epoch)
        self._tell_tune(row, complete, with_checkpoint=checkpoint)
        if not complete:
            # After Tune has the report: a trial stopped right there (at a rung) has the
            # epoch logged by the driver from Tune's copy (tracking.mark_pruned).
            self.logger.epoch(row)
        if overdue and not complete:  # its records are in the checkpoint just reported
            raise self.logger.outbox.timeout()
        # A trial that completed ends as completed: the driver's relay sends its spool.

    def _tell_tune(self, row: Mapping[str, Any], complete: bool, with_checkpoint: bool) -> None:
        """Epoch rows go to Tune whole (the driver logs a stopped trial's last epoch from
        Tune's copy); the final row, the one with most values, is trimmed."""
        from ray import tune
        from ray.tune import Checkpoint

        from study.trial.run import CHECKPOINT

        metrics = tune_metrics(row, self.final_metrics if complete else None)
        if self.logger.run_id is not None:  # for the Optuna trial (study.service.searcher)
            metrics[MLFLOW_RUN_ID] = self.logger.run_id
        metrics["complete"] = complete
        if not with_checkpoint:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(dir=self.work.parent) as folder:
            _link_or_copy(self.work / CHECKPOINT, Path(folder) / CHECKPOINT)
            # What MLflow has not taken yet travels with the checkpoint: a retry sends
            # it first, and the driver sends a finished trial's.
            metrics[PENDING] = self.logger.spool(Path(folder) / SPOOL)
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))
        self.policy.saved()


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
