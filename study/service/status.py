"""``study status``: a study's progress and current front, read from MLflow only.

It never touches Ray or Optuna, so it is safe to run while the study is running,
from any machine that reaches the tracking server.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from study.mlflow_layout import ROLE_TAG, STUDY_TAG, child_runs, trial_state
from study.secrets import redact


def print_status(uri: str, name: str, stream: TextIO | None = None) -> dict[str, int]:
    """Print trial counts (planned, complete, stopped early, running, failed, killed)
    and the current front of study ``name``; return the counts. A trial stopped early
    by the scheduler (:func:`~study.mlflow_layout.trial_state` ``PRUNED``) is counted
    apart and never enters the front. The front is ``study pareto``'s: the same trials
    (:func:`study.pareto.store.load_children`), the same computation."""
    from study.pareto.store import connect, find_parent, load_children, study_objectives
    from study.pareto.tables import REPORTED_TEST

    stream = stream or sys.stdout
    client = connect(uri)  # one-line errors: unreachable, unknown name
    parent = find_parent(client, name)
    objectives = study_objectives(parent)
    trials = load_children(client, parent, objectives, name, describe=False)
    states = Counter(trials.statuses)
    counts = {
        "planned": int(parent.data.params.get("study.trials", 0)),
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
    if trials.missing:
        print(
            f"{trials.missing} complete trial(s) without a finite value of every objective "
            "left off the front",
            file=stream,
        )
    front = trials.front()
    if front:
        reported = [
            n
            for n in REPORTED_TEST
            if n not in objectives and any(n in record.metrics for record in trials.records)
        ]
        header = ", ".join(f"{m} {d}" for m, d in objectives.items())
        if reported:
            header += f" | reported: {', '.join(reported)}"
        print(f"front ({header}):", file=stream)
        first, direction = next(iter(objectives.items()))
        ordered = sorted(
            front, key=lambda r: -r.objectives[first] if direction == "max" else r.objectives[first]
        )
        for record in ordered:
            label = f"{record.filter} / {record.augment}"
            scores = "  ".join(f"{record.objectives[m]:.4f}" for m in objectives)
            if reported:
                shown = [record.metrics.get(n) for n in reported]
                scores += "  | " + "  ".join("-" if v is None else f"{v:.4f}" for v in shown)
            print(f"  {label:<40} {scores}  run {record.run_id}", file=stream)
    print(f"parent run: {parent.info.run_id} (experiment {parent.info.experiment_id})", file=stream)
    return counts


def list_studies(uri: str) -> list[dict[str, object]]:
    """Every study the tracking store knows (one parent run each), newest first: name,
    experiment, status, trial counts by state, objectives, start time (ms)."""
    from study.mlflow_layout import all_experiment_ids, search_all_runs
    from study.pareto.store import connect

    client = connect(uri)  # one-line errors: unreachable, no such database
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    parents = search_all_runs(client, all_experiment_ids(client), f"tags.`{ROLE_TAG}` = 'parent'")
    rows = []
    for parent in sorted(parents, key=lambda r: r.info.start_time or 0, reverse=True):
        states = Counter(trial_state(run) for run in child_runs(uri, parent.info.run_id))
        params = parent.data.params
        rows.append(
            {
                "name": parent.data.tags.get(STUDY_TAG, parent.info.run_name),
                "experiment": experiments.get(parent.info.experiment_id, "?"),
                "status": parent.info.status,
                "planned": int(params.get("study.trials", 0)),
                "complete": states["FINISHED"],
                "stopped": states["PRUNED"],
                "running": states["RUNNING"],
                "failed": states["FAILED"],
                "objectives": params.get("study.objectives", ""),
                "started": parent.info.start_time,
            }
        )
    return rows


def print_studies(uri: str, stream: TextIO | None = None) -> list[dict[str, object]]:
    """``study list``: one line per study, newest first."""
    import datetime

    stream = stream or sys.stdout
    rows = list_studies(uri)
    if not rows:
        print(f"no studies at {redact(uri)}", file=stream)
        return rows
    print(
        f"{'study':<28} {'status':<9} {'done':>9} {'stopped':>7} {'running':>7} "
        f"{'failed':>6}  started           objectives",
        file=stream,
    )
    for row in rows:
        started = datetime.datetime.fromtimestamp((row["started"] or 0) / 1000)
        done = f"{row['complete']}/{row['planned']}"
        print(
            f"{row['name']!s:<28} {str(row['status']).lower():<9} {done:>9} "
            f"{row['stopped']:>7} {row['running']:>7} {row['failed']:>6}  "
            f"{started:%Y-%m-%d %H:%M}  {row['objectives']}",
            file=stream,
        )
    return rows
