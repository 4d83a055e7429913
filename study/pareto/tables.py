"""The Pareto tables: ``pareto.csv``/``trials.csv``, ``pareto.json``, ``table.md`` (the
paper's Table 1 layout) and the parent run's description."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from study.metrics.names import SHOWN_BESIDE
from study.mlflow_layout import FINAL_PREFIX
from study.pareto.encoding import family_key
from study.pareto.records import Reference, StudyTrials, TrialRecord

TABLE_METRICS = (
    ("test_acc", "None"),
    ("test_acc_shift_random", "Rand"),
    ("test_consistency", "Consistency"),
)


"""Table 1's columns per augmentation setting: accuracy with no shift, at a random shift,
and classification consistency."""


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


REPORTED_TEST = ("test_acc", "test_consistency", *SHOWN_BESIDE)


"""Test-set columns shown beside the objectives in every export (those a trial has): the
front is chosen on the objectives (validation metrics, in a search), the test set only
reported; consistency under crops and sub-pixel shifts beside the circular one
(:mod:`study.metrics.families`)."""


def record_row(record: TrialRecord, objectives: Sequence[str], **extra: Any) -> dict[str, Any]:
    """One flat row: identity, filter, augmentation, objectives, the test-set columns
    (:data:`REPORTED_TEST`, when they are not objectives), other final metrics
    (``final.<name>``), searched params (``optuna.<name>``)."""
    row: dict[str, Any] = {"study": record.study, **extra}
    row.update(
        run_id=record.run_id,
        trial_id=record.trial_id,
        run_name=record.run_name,
        filter=record.filter,
        family=record.family,
        taps=record.taps,
        weights=list(record.weights),
        augment=record.augment,
    )
    row.update({name: record.objectives[name] for name in objectives})
    reported = [n for n in REPORTED_TEST if n not in objectives and n in record.metrics]
    row.update({name: record.metrics[name] for name in reported})
    row.update(
        {
            f"{FINAL_PREFIX}{name}": value
            for name, value in sorted(record.metrics.items())
            if name not in objectives and name not in reported
        }
    )
    row.update(sorted(record.params.items()))
    return row


def front_rows(studies: Sequence[StudyTrials]) -> list[dict[str, Any]]:
    """The front of each study as rows (see :func:`record_row`)."""
    return [record_row(record, trials.names) for trials in studies for record in trials.front()]


def trial_rows(studies: Sequence[StudyTrials]) -> list[dict[str, Any]]:
    """Every complete trial as a row, with its ``rank`` (1 = front)."""
    rows = []
    for trials in studies:
        for record, rank in zip(trials.records, trials.ranks(), strict=True):
            rows.append(record_row(record, trials.names, rank=int(rank)))
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    key: json.dumps(value) if isinstance(value, list) else value
                    for key, value in row.items()
                }
            )
    return path


def write_csv(studies: Sequence[StudyTrials], out: Path, trials_csv: bool = True) -> list[Path]:
    """``pareto.csv`` (the front) and ``trials.csv`` (all complete trials with ``rank``);
    ``weights`` as a JSON list, floats at full precision."""
    paths = [_write_rows(out / "pareto.csv", front_rows(studies))]
    if trials_csv:
        paths.append(_write_rows(out / "trials.csv", trial_rows(studies)))
    return paths


def write_json(studies: Sequence[StudyTrials], path: Path, reference: Reference = None) -> Path:
    """``pareto.json``: objectives, and per study the front rows, its size, the number of
    complete trials, the reference point and the hypervolume."""
    document = {
        "objectives": dict(studies[0].objectives) if studies else {},
        "studies": [],
    }
    for trials in studies:
        ref = trials.reference(reference)
        front = [record_row(r, trials.names) for r in trials.front()]
        document["studies"].append(
            {
                "study": trials.study,
                "parent_run_id": trials.parent_run_id,
                "experiment_id": trials.experiment_id,
                "complete_trials": len(trials.records),
                "runs_by_status": trials.statuses,
                "front_size": len(front),
                "reference": [float(v) for v in ref],
                "hypervolume": _number(trials.hypervolume(ref)),
                "front": front,
            }
        )
    path.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")
    return path


def _finite(value: Any) -> Any:
    """NaN and infinities as ``null`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def paper_weights(weights: Sequence[float]) -> str:
    """Taps as Table 1 prints them: scaled so the first non-zero tap is +-1, two decimals
    at most.

    >>> paper_weights([0.0625, 0.25, 0.375, 0.25, 0.0625])
    '[1, 4, 6, 4, 1]'
    >>> paper_weights([-0.0766, 0.0, 0.2298, 0.3609, 0.2298, 0.0, -0.0766])
    '[-1, 0, 3, 4.71, 3, 0, -1]'
    """
    array = np.asarray(weights, dtype=np.float64)
    if array.size == 0:
        return "-"
    nonzero = array[np.abs(array) > 1e-9 * np.abs(array).max()]
    scaled = array / abs(nonzero[0])
    texts = []
    for value in scaled:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        texts.append("0" if text in ("-0", "") else text)
    return "[" + ", ".join(texts) + "]"


def _percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def table_markdown(studies: Sequence[StudyTrials]) -> str:
    """The paper's Table 1 layout: one row per filter (Table 1's family order, then taps),
    columns filter, taps, weights (scaled as printed in the paper), then per augmentation
    setting: test accuracy with no shift (``test_acc``), at a random shift
    (``test_acc_shift_random``) and classification consistency (``test_consistency``),
    in percent. With several studies a setting is
    ``study / augmentation``. A cell with several trials shows the one of best Pareto rank,
    then best first objective; the count is given as ``(n=...)``."""
    multi = len(studies) > 1
    cells: dict[tuple[str, str], list[tuple[int, float, TrialRecord]]] = {}
    filters: dict[str, TrialRecord] = {}
    settings: dict[str, None] = {}
    for trials in studies:
        first_sign = -1.0 if trials.directions[0] == "max" else 1.0
        for record, rank in zip(trials.records, trials.ranks(), strict=True):
            setting = f"{trials.study} / {record.augment}" if multi else record.augment
            settings[setting] = None
            filters.setdefault(record.filter, record)
            key = next(iter(trials.objectives))
            cells.setdefault((record.filter, setting), []).append(
                (int(rank), first_sign * record.objectives[key], record)
            )
    columns = sorted(settings, key=lambda s: (not s.endswith("none"), s))
    rows = sorted(filters.values(), key=lambda r: (*family_key(r.family), r.taps or 0, r.filter))
    header = ["Filter", "# Taps", "Weights"]
    for setting in columns:
        header += [f"{setting}: {label}" for _, label in TABLE_METRICS]
    lines = [
        "Classification accuracy (percent) with no shift (None) and at random shifts (Rand), "
        "and classification consistency, per filter and training augmentation "
        "(layout of the paper's Table 1).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---"] + ["---:"] * (len(header) - 3)) + "|",
    ]
    for record in rows:
        line = [
            f"`{record.filter}`".replace("|", "\\|"),
            str(record.taps if record.taps is not None else "-"),
            paper_weights(record.weights),
        ]
        for setting in columns:
            entries = sorted(cells.get((record.filter, setting), []), key=lambda e: e[:2])
            if not entries:
                line += ["-"] * len(TABLE_METRICS)
                continue
            best = entries[0][2]
            count = f" (n={len(entries)})" if len(entries) > 1 else ""
            values = [_percent(best.metrics.get(metric)) for metric, _ in TABLE_METRICS]
            values[0] += count
            line += values
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines) + "\n"


NOTE_ROWS = 30


"""Front trials the parent run's description lists (the best first by the first
objective); the rest are in its ``pareto/pareto.csv``."""


def front_note(trials: StudyTrials, hypervolume: float, reference: Sequence[float]) -> str:
    """The parent run's description (markdown): the front so far, each trial linked to
    its child run in the MLflow UI, best first by the first objective.

    >>> from study.pareto.records import TrialRecord
    >>> record = TrialRecord("s", "ab12", "trial_0", "0", "binomial-3", "binomial", 3,
    ...     (0.25, 0.5, 0.25), "none", {"test_acc": 0.9}, {}, {})
    >>> trials = StudyTrials("s", "7", "p1", {"test_acc": "max"}, [record])
    >>> print(front_note(trials, 0.9, [0.0]).splitlines()[-1])
    | [trial_0](#/experiments/7/runs/ab12) | binomial-3 | none | 0.9000 |
    """
    front = trials.front()
    first, way = trials.names[0], trials.directions[0]
    front.sort(key=lambda r: r.objectives[first], reverse=way == "max")
    shown = ", ".join(f"{v:g}" for v in reference)
    lines = [
        f"**Pareto front** of {len(trials.records)} complete trials: {len(front)} on it, "
        f"hypervolume {hypervolume:.4f} (reference {shown}). "
        "Every trial, with all metrics: artifact `pareto/pareto.csv`.",
        "",
        "| trial | downsampling | augmentation | " + " | ".join(trials.names) + " |",
        "|---" * (3 + len(trials.names)) + "|",
    ]
    for record in front[:NOTE_ROWS]:
        link = f"[{record.run_name}](#/experiments/{trials.experiment_id}/runs/{record.run_id})"
        values = " | ".join(f"{record.objectives[name]:.4f}" for name in trials.names)
        lines.append(f"| {link} | {record.filter} | {record.augment} | {values} |")
    if len(front) > NOTE_ROWS:
        lines.append(f"\n{len(front) - NOTE_ROWS} more on the front: `pareto/pareto.csv`.")
    return "\n".join(lines)


def write_table(studies: Sequence[StudyTrials], path: Path) -> Path:
    """``table.md`` of :func:`table_markdown`."""
    path.write_text(table_markdown(studies))
    return path
