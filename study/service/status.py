"""``study status``: a study's progress and current front, read from MLflow only.

It never touches Ray or Optuna, so it is safe to run while the study is running,
from any machine that reaches the tracking server.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from study.service.tracking import child_runs, trial_state


def print_status(uri: str, name: str, stream: TextIO | None = None) -> dict[str, int]:
    """Print trial counts (planned, complete, stopped early, running, failed, killed)
    and the current front of study ``name``; return the counts. A trial stopped early
    by the scheduler (:func:`~study.service.tracking.trial_state` ``PRUNED``) is counted
    apart and never enters the front."""
    from study.pareto.export import REPORTED_TEST
    from study.pareto.front import front_mask
    from study.pareto.store import connect, find_parent, study_objectives

    stream = stream or sys.stdout
    parent = find_parent(connect(uri), name)  # one-line errors: unreachable, unknown name
    params = parent.data.params
    objectives = study_objectives(parent)
    children = child_runs(uri, parent.info.run_id)
    states = Counter(trial_state(run) for run in children)
    counts = {
        "planned": int(params.get("study.trials", 0)),
        "complete": states["FINISHED"],
        "stopped": states["PRUNED"],
        "running": states["RUNNING"],
        "failed": states["FAILED"],
        "killed": states["KILLED"],
    }
    print(
        f"study {name} ({parent.info.status.lower()}): {counts['complete']} of "
        f"{counts['planned']} trials complete"
        + (f", {counts['stopped']} stopped early" if counts["stopped"] else "")
        + f", {counts['running']} running, {counts['failed']} failed"
        + (f", {counts['killed']} killed" if counts["killed"] else ""),
        file=stream,
    )
    complete = [
        run
        for run in children
        if trial_state(run) == "FINISHED"
        and all(f"final.{m}" in run.data.metrics for m in objectives)
    ]
    if complete:
        import numpy as np

        values = np.array(
            [[run.data.metrics[f"final.{m}"] for m in objectives] for run in complete]
        )
        mask = front_mask(values, list(objectives.values()))
        reported = [n for n in REPORTED_TEST if n not in objectives]
        header = ", ".join(f"{m} {d}" for m, d in objectives.items())
        if reported:
            header += f" | reported: {', '.join(reported)}"
        print(f"front ({header}):", file=stream)
        order = np.argsort(
            -values[:, 0] if objectives[next(iter(objectives))] == "max" else values[:, 0]
        )
        for index in order:
            if mask[index]:
                run = complete[index]
                label = (
                    f"{run.data.params.get('model.filter', '?')} / "
                    f"{run.data.params.get('augment.kind', '?')}"
                )
                scores = "  ".join(f"{v:.4f}" for v in values[index])
                shown = [run.data.metrics.get(f"final.{n}") for n in reported]
                if reported:
                    scores += "  | " + "  ".join("-" if v is None else f"{v:.4f}" for v in shown)
                print(f"  {label:<40} {scores}  run {run.info.run_id}", file=stream)
    print(f"parent run: {parent.info.run_id} (experiment {parent.info.experiment_id})", file=stream)
    return counts
