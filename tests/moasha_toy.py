"""A toy Ray Tune experiment for the MO-ASHA tests: a function trainable that trains
nothing and reports, every epoch, deterministic ``val_acc`` / ``val_consistency`` from
its config, with a ``tune.Checkpoint`` per epoch (a retried or restored trial resumes
after its last checkpointed epoch), then a final report without rung metrics, as the
study's trainable does.

Run as a driver in its own process (its own local Ray instance, killed with it)::

    python -c "import moasha_toy; moasha_toy.main()" run STORAGE NAME OUT [KILL_AFTER]
    python -c "import moasha_toy; moasha_toy.main()" resume STORAGE NAME OUT

``run`` with ``KILL_AFTER`` SIGKILLs its own process once the scheduler has taken that
many decisions. ``OUT`` receives the decision log (trial ids replaced by point names)
and the trials' fates as JSON; decision lines go to stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

EPOCHS = 9
METRICS = {"val_acc": "max", "val_consistency": "max"}
# Final (accuracy, consistency) of each trial, run one at a time in this order. At each
# epoch both are scaled by the same factor, so dominance at every rung is as here.
POINTS = {
    "p0": (0.5, 0.5),
    "p1": (0.4, 0.4),  # dominated by p0 at rung 1: stopped
    "p2": (0.6, 0.3),  # beside p0 on the front: kept
    "p3": (0.7, 0.7),  # dominates all three before it: kept
    "p4": (0.2, 0.2),  # dominated by everyone: stopped
    "p5": (0.3, 0.9),  # an extreme of the front: kept
    "p6": (0.65, 0.65),  # rank 2 of 7 at rung 1 (kept), rank 2 of 5 at rung 3 (stopped)
    "p7": (0.45, 0.45),  # rank 5 of 8 (p3, p5, p6, p0, p2 better): stopped
}


def toy_trainable(config: dict) -> None:
    """Epochs ``last checkpoint + 1 .. EPOCHS``; ``val_* = final * (1 - 0.5**epoch)``."""
    from ray import tune

    acc, consistency = POINTS[config["point"]]
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "epoch.json").read_text())["epoch"]
    for epoch in range(start + 1, EPOCHS + 1):
        scale = 1 - 0.5**epoch
        metrics = {"epoch": epoch, "val_acc": acc * scale, "val_consistency": consistency * scale}
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "epoch.json").write_text(json.dumps({"epoch": epoch}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    tune.report({"complete": True, "test_acc": acc, "consistency": consistency})


def _callbacks():
    from ray.tune import Callback

    class KillAfter(Callback):
        """SIGKILL this driver once the scheduler has taken ``after`` decisions."""

        def __init__(self, scheduler, after: int) -> None:
            self.scheduler, self.after = scheduler, after

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if self.after and len(self.scheduler.decisions) >= self.after:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfter


def build_tuner(storage: str, name: str, kill_after: int = 0):
    """A Tuner over ``POINTS``, one trial at a time, MO-ASHA with grace 1, eta 3 and
    budget ``EPOCHS`` (rungs at epochs 1 and 3); returns it and its state callback."""
    from ray import tune

    from study.service.scheduler import MultiObjectiveASHA, SchedulerState

    scheduler = MultiObjectiveASHA(metrics=METRICS, grace=1, eta=3, budget=EPOCHS)
    state = SchedulerState(scheduler, report=print)
    tuner = tune.Tuner(
        toy_trainable,
        param_space={"point": tune.grid_search(list(POINTS))},
        tune_config=tune.TuneConfig(
            scheduler=scheduler,
            max_concurrent_trials=1,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=[state, _callbacks()(scheduler, kill_after)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    return tuner, state


def restore_tuner(storage: str, name: str):
    """``Tuner.restore`` of the experiment, the killer callback disarmed and the
    scheduler's state callback kept where it was; returns the tuner and that callback."""
    from ray import tune

    from study.service.scheduler import SchedulerState, restored_callbacks

    tuner = tune.Tuner.restore(
        str(Path(storage) / name), toy_trainable, resume_unfinished=True, resume_errored=True
    )
    callbacks = restored_callbacks(tuner)
    for callback in callbacks:
        if not isinstance(callback, SchedulerState):
            callback.after = 0
    return tuner, next(c for c in callbacks if isinstance(c, SchedulerState))


def main(argv: list[str] | None = None) -> None:
    import ray

    mode, storage, name, out, *rest = argv if argv is not None else sys.argv[1:]
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    if mode == "run":
        tuner, state = build_tuner(storage, name, int(rest[0]) if rest else 0)
    else:
        tuner, state = restore_tuner(storage, name)
    results = tuner.fit()
    points = {r.metrics["trial_id"]: r.config["point"] for r in results}
    log = [{**d.as_dict(), "trial_id": points[d.trial_id]} for d in state.scheduler.decisions]
    fates = {
        r.config["point"]: "complete" if r.metrics.get("complete") else "stopped" for r in results
    }
    report = {"decisions": log, "fates": fates, "restored": state.restored}
    Path(out).write_text(json.dumps(report, indent=1))
