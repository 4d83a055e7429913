"""What the driver prints while a study runs, and what it keeps up to date in MLflow.

:class:`StudyProgress` is a Ray Tune callback on the driver. As trials finish it
prints one line each (the trial's filter, augmentation and objectives, then done /
stopped / running / failed counts and the current Pareto front), advances a progress
bar over the planned trials, refreshes the parent run's front (``hypervolume``,
``front_size`` and the ``pareto/`` artifacts) and marks the child runs of failed
trials as failed. With an early-stopping scheduler it also prints each rung decision
(through :class:`~study.service.scheduler.SchedulerState`), closes the child runs of
stopped trials as pruned and keeps the parent's ``scheduler/decisions.json`` current.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS
from tqdm import tqdm

from study.metrics.names import SHOWN_BESIDE
from study.service.front_refresh import FrontRefresher
from study.service.outbox import PENDING
from study.service.relay import Relay

if TYPE_CHECKING:
    from study.service.scheduler import MultiObjectiveASHA

#: The decision log is rewritten at most this often (seconds) while a study runs.
DECISIONS_EVERY_S = 5.0
#: Result keys Tune adds to what a trial reports (and ``complete``, the trainable's).
_TUNE_KEYS = frozenset(
    {*AUTO_RESULT_KEYS, *DEBUG_METRICS, "done", "complete", "experiment_tag", "should_checkpoint"}
)


def epoch_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """The epoch's own metrics in a Tune result (Tune's bookkeeping keys left out)."""
    return {k: v for k, v in result.items() if k not in _TUNE_KEYS and "/" not in k}


def describe_trial(config: dict[str, Any]) -> str:
    """``binomial-5 / flip+shift`` (``aps(binomial-3) / none`` with APS): a trial's
    filter, downsampling and augmentation, from its config."""
    trial = config.get("trial", {})
    model, augment = trial.get("model", {}), trial.get("augment", {})
    filter_spec = model.get("filter", "?")
    if not isinstance(filter_spec, str):
        from study import filters

        filter_spec = str(filters.parse(filter_spec))
    from study.labels import downsampling_label

    filter_spec = downsampling_label(filter_spec, model)  # aps(...), ideal(...): say so
    return f"{filter_spec} / {augment.get('kind', 'none')}"


def failure_reason(trial) -> str:
    """The last line of the error that ended ``trial`` (e.g. ``TrialFailed: loss is
    nan at epoch 3``), else where Tune wrote it."""
    try:
        error = trial.get_pickled_error()
    except Exception:
        error = None
    text = str(error or "")
    if not text.strip() and trial.error_file:  # not pickled (yet): Tune's text of it
        try:
            text = Path(trial.error_file).read_text(errors="replace")
        except OSError:
            text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[-1][:300]
    return f"see {trial.error_file or 'the trial folder'}"


#: Metrics a finished trial's line shows besides the objectives.
SHOWN_METRICS = ("test_acc", "test_consistency", *SHOWN_BESIDE)


class StudyProgress(Callback):
    """Progress lines, a bar over the planned trials, and the parent run's front."""

    def __init__(
        self,
        planned: int,
        objectives: dict[str, str],
        tracking_uri: str,
        parent_run_id: str,
        scheduler: MultiObjectiveASHA | None = None,
    ) -> None:
        self.planned = planned
        self.objectives = dict(objectives)
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.scheduler = scheduler
        self.results: dict[str, tuple[str, list[float]]] = {}
        self.failed: set[str] = set()
        self.stopped: set[str] = set()
        self.bar: tqdm | None = None
        self.seeded = False
        self._logged, self._logged_at = 0, 0.0  # decisions in the parent's decisions.json
        self.refresher: FrontRefresher | None = None  # the parent's front, off the loop
        self.relay: Relay | None = None  # the driver's MLflow writes, off the loop
        self._front: list[tuple[str, list[float]]] = []  # non-dominated among results

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into Tune's tuner.pkl: no password there (a resumed study gets a new
        # progress callback with the real URI, see tuner._use_progress).
        from study.secrets import redact

        state = {
            **self.__dict__,
            "bar": None,
            "seeded": False,
            "refresher": None,
            "relay": None,
        }
        return {**state, "tracking_uri": redact(self.tracking_uri)}

    def writes(self) -> Relay:
        """The relay of this driver's MLflow writes (started on first use)."""
        if self.relay is None:
            self.relay = Relay(self.tracking_uri)
        return self.relay

    def setup(self, **info) -> None:
        self.bar = tqdm(
            total=self.planned, desc="trials", unit="trial", file=sys.stderr, disable=None
        )

    def on_step_begin(self, iteration: int, trials: Sequence, **info) -> None:
        """On the first step of a resumed study, count the trials done before."""
        if self.seeded:
            return
        self.seeded = True
        for trial in trials:
            result = trial.last_result or {}
            if trial.status != "TERMINATED":
                continue
            if result.get(PENDING) and trial.checkpoint is not None:
                # it ended while MLflow was away, and the last driver could not write its
                # records (a spool already written carries a mark and is skipped)
                self.writes().add_spool(trial.trial_id, trial.checkpoint)
            if result.get("complete"):
                values = [float(result[metric]) for metric in self.objectives]
                self._add_result(trial.trial_id, (describe_trial(trial.config), values))
            elif self.scheduler is not None and self.scheduler.stopped(trial.trial_id):
                self.stopped.add(trial.trial_id)
        restored = len(self.scheduler.decisions) if self.scheduler is not None else 0
        if self.results or self.stopped or restored:
            stopped = f" ({len(self.stopped)} stopped early)" if self.stopped else ""
            done = len(self.results) + len(self.stopped)
            decisions = f"; {restored} rung decisions restored" if restored else ""
            self.line(f"resuming: {done} of {self.planned} trials done before{stopped}{decisions}")
            if self.bar is not None:
                self.bar.n = done
                self.bar.refresh()

    def on_trial_result(self, iteration: int, trials: Sequence, trial, result: dict, **info):
        """Keep the parent's decision log current (at most every few seconds)."""
        if self.scheduler is None or len(self.scheduler.decisions) <= self._logged:
            return
        if time.monotonic() - self._logged_at >= DECISIONS_EVERY_S:
            self._log_decisions()

    def on_trial_complete(self, iteration: int, trials: Sequence, trial, **info) -> None:
        result = trial.last_result or {}
        if self.scheduler is not None and self.scheduler.stopped(trial.trial_id):
            self._stopped(trials, trial, result)
            return
        if not result.get("complete"):
            return
        if result.get(PENDING):  # it ended while MLflow was away: its records follow
            self.writes().add_spool(trial.trial_id, trial.checkpoint)
        values = [float(result[metric]) for metric in self.objectives]
        self._add_result(trial.trial_id, (describe_trial(trial.config), values))
        scores = "  ".join(f"{m} {v:.4f}" for m, v in zip(self.objectives, values, strict=True))
        reported = [m for m in SHOWN_METRICS if m not in self.objectives and m in result]
        if reported:
            scores += "  | " + "  ".join(f"{m} {float(result[m]):.4f}" for m in reported)
        self.line(f"trial {trial.trial_id} done: {self.results[trial.trial_id][0]}  {scores}")
        self._status(trials, trial)
        self._refresh_parent()

    def on_trial_error(self, iteration: int, trials: Sequence, trial, **info) -> None:
        self.failed.add(trial.trial_id)
        reason = failure_reason(trial)
        self.line(f"trial {trial.trial_id} failed: {describe_trial(trial.config)}: {reason}")
        self.writes().call(
            "mark_failed", parent_id=self.parent_run_id, trial_id=trial.trial_id, reason=reason
        )
        self._status(trials, trial)

    def on_experiment_end(self, trials: Sequence, **info) -> None:
        if self.scheduler is not None and len(self.scheduler.decisions) > self._logged:
            self._log_decisions()
        if self.refresher is not None:  # the final front, complete, before `fit` returns
            self.refresher.close()
            self.refresher = None
        if self.bar is not None:
            self.bar.close()

    def line(self, text: str) -> None:
        """Print one progress line (above the bar)."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def _stopped(self, trials: Sequence, trial, result: Mapping[str, Any]) -> None:
        """A trial the scheduler stopped at a rung: its child run closed as pruned."""
        self.stopped.add(trial.trial_id)
        decision = self.scheduler.stopped_by(trial.trial_id)
        epoch = result.get("epoch", decision.rung)
        self.line(
            f"trial {trial.trial_id} stopped at epoch {epoch}: {describe_trial(trial.config)}"
        )
        relay = self.writes()
        if result.get(PENDING):  # stopped while MLflow was away: its records first
            relay.add_spool(trial.trial_id, trial.checkpoint)
        relay.call(
            "mark_pruned",
            parent_id=self.parent_run_id,
            trial_id=trial.trial_id,
            decision=decision.as_dict(),
            metrics=list(self.scheduler.metrics),
            row=epoch_row(result),
        )
        relay.call(
            "log_parent_metric",
            parent_id=self.parent_run_id,
            key="trials_stopped",
            value=len(self.stopped),
            step=len(self.stopped),
        )
        self._status(trials, trial)

    def _log_decisions(self) -> None:
        state = self.scheduler.get_state()
        self.writes().call(
            "log_decisions",
            parent_id=self.parent_run_id,
            document={"settings": state["settings"], "decisions": state["decisions"]},
        )
        self._logged, self._logged_at = len(state["decisions"]), time.monotonic()

    def front(self) -> list[tuple[str, list[float]]]:
        """The non-dominated complete trials so far: (filter / augmentation, values)."""
        return list(self._front)

    def _add_result(self, trial_id: str, row: tuple[str, list[float]]) -> None:
        """Record a complete trial and update the front incrementally: the new front is
        the non-dominated part of the old front plus this trial (dominance is
        transitive), so each update costs the front's size, not the study's."""
        import numpy as np

        from study.pareto.front import front_mask

        again = trial_id in self.results  # a re-run trial: its old values leave the front
        self.results[trial_id] = row
        rows = list(self.results.values()) if again else [*self._front, row]
        mask = front_mask(np.array([v for _, v in rows]), list(self.objectives.values()))
        self._front = [kept for kept, keep in zip(rows, mask, strict=True) if keep]

    def _status(self, trials: Sequence, ended) -> None:
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended)
        done, stopped = len(self.results), len(self.stopped)
        if self.bar is not None:
            self.bar.n = done + stopped + len(self.failed)
            self.bar.set_postfix(
                done=done, stopped=stopped, running=running, failed=len(self.failed)
            )
        front = "; ".join(
            f"{label} ({', '.join(f'{v:.3f}' for v in values)})" for label, values in self.front()
        )
        early = f"{stopped} stopped early, " if self.scheduler is not None else ""
        self.line(
            f"  {done} done, {early}{running} running, {len(self.failed)} failed of "
            f"{self.planned}" + (f" | front: {front}" if front else "")
        )

    def _refresh_parent(self) -> None:
        """Ask for the parent's front to be refreshed (in the background, throttled:
        :mod:`study.service.front_refresh`)."""
        if self.refresher is None:
            self.refresher = FrontRefresher(self._update_parent_front)
        self.refresher.request()

    def _update_parent_front(self) -> None:
        from study.pareto.store import update_parent_front

        update_parent_front(self.tracking_uri, self.parent_run_id, self.objectives)
