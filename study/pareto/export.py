"""Writers for a study's Pareto front: csv, json, png, svg, html, md.

Each takes one or more :class:`~study.pareto.records.StudyTrials` (several studies share one
plot, each with its own front) and writes into a folder:

==========  ======================================================================
format      files
==========  ======================================================================
csv         ``pareto.csv`` (the front) and ``trials.csv`` (every complete trial, ranked)
json        ``pareto.json`` (per study: front, hypervolume, reference point)
png, svg    ``pareto.png`` / ``pareto.svg``: the paper's Fig. 5 encoding (matplotlib)
html        ``pareto.html``: the same plot, interactive (plotly, self-contained)
md          ``table.md``: the paper's Table 1 layout
==========  ======================================================================
"""

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
from study.pareto import front as fr
from study.pareto.records import Reference, StudyTrials, TrialRecord

FORMATS = ("csv", "json", "png", "svg", "html", "md")
FILES = {
    "csv": ("pareto.csv", "trials.csv"),
    "json": ("pareto.json",),
    "png": ("pareto.png",),
    "svg": ("pareto.svg",),
    "html": ("pareto.html",),
    "md": ("table.md",),
}

FAMILY_ORDER = ("delta", "rect", "triangle", "binomial", "firwin", "firls", "weights")
FAMILY_LABELS = {
    "delta": "Delta (baseline)",
    "rect": "Rectangle",
    "triangle": "Triangle",
    "binomial": "Binomial",
    "firwin": "Window",
    "firls": "Least Squares",
    "weights": "Weights",
    "learnable": "Learnable",
    "learnable-cutoff": "Learnable cutoff",
    "adaptive": "Content-aware (adaptive)",
    "ideal": "Ideal low-pass",
}
_PALETTE = {
    "delta": "#000000",
    "rect": "#1f77b4",
    "triangle": "#ff7f0e",
    "binomial": "#2ca02c",
    "firwin": "#d62728",
    "firls": "#9467bd",
    "weights": "#8c564b",
    "learnable": "#e377c2",
    "learnable-cutoff": "#7f7f7f",
    "adaptive": "#17becf",
    "ideal": "#bcbd22",
}
_SPARE = ("#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a")
_LINESTYLES = ("-", "--", ":", "-.")
_DASHES = ("solid", "dash", "dot", "dashdot")
_PLOTLY_SYMBOLS = {
    1: "star",
    2: "diamond-tall",
    3: "triangle-up",
    4: "diamond",
    5: "pentagon",
    6: "hexagon",
    7: "circle",
    8: "octagon",
}
_BAR = np.array([[-0.3, -1.0], [0.3, -1.0], [0.3, 1.0], [-0.3, 1.0], [-0.3, -1.0]])
"""The 2-tap marker: a narrow bar (two long sides) that, unlike ``|``, can be hollow."""
LABEL_ALL_UP_TO = 40
"""Plots label every point by its filter up to this many points, else the front only."""

TABLE_METRICS = (
    ("test_acc", "None"),
    ("test_acc_shift_random", "Rand"),
    ("test_consistency", "Consistency"),
)
"""Table 1's columns per augmentation setting: accuracy with no shift, at a random shift,
and classification consistency."""


def family_color(family: str) -> str:
    """The plots' colour of a filter family (Fig. 5: colour = FIR design method).

    >>> family_color("binomial")
    '#2ca02c'
    """
    if family in _PALETTE:
        return _PALETTE[family]
    return _SPARE[sum(map(ord, family)) % len(_SPARE)]


def tap_marker(taps: int | None) -> Any:
    """The matplotlib marker of a tap count (Fig. 5: number of sides = number of taps):
    a regular polygon with ``taps`` sides from 3 to 12 taps, a narrow bar for 2, a star
    for 1 (the baseline; a circle would look like a 7-gon), a cross otherwise. Every one
    can be drawn filled or hollow (the augmentation encoding).

    >>> tap_marker(1), tap_marker(4), tap_marker(None)
    ('*', (4, 0, 0), 'X')
    >>> tap_marker(2).shape  # the bar's vertices
    (5, 2)
    """
    if taps is None or taps < 1 or taps > 12:
        return "X"
    if taps == 1:
        return "*"
    if taps == 2:
        return _BAR
    return (taps, 0, 0)


def _tap_symbol(taps: int | None, augmented: bool = False) -> str:
    """The plotly symbol: as :func:`tap_marker`, ``-open`` when augmented."""
    return _PLOTLY_SYMBOLS.get(taps or 0, "x") + ("-open" if augmented else "")


AUGMENTATION_LEGEND = ("filled: no augmentation", "hollow: augmented")
"""How the plots encode training augmentation (the paper's Fig. 5 left and right panels
in one plot)."""


def filter_label(record: TrialRecord, limit: int = 28) -> str:
    """A point's label: the canonical filter string, shortened to ``family-taps`` past
    ``limit`` characters."""
    if len(record.filter) <= limit:
        return record.filter
    return f"{record.family}-{record.taps}"


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


def _axes_values(trials: StudyTrials) -> tuple[np.ndarray, np.ndarray, str, str]:
    values = trials.values()
    names = trials.names
    if len(names) >= 2:
        return values[:, 0], values[:, 1], names[0], names[1]
    return np.arange(1, len(values) + 1, dtype=float), values[:, 0], "complete trial", names[0]


def _title(studies: Sequence[StudyTrials]) -> str:
    names = studies[0].names if studies else []
    title = "Pareto front (cf. Fig. 5)"
    if len(names) > 2:
        title += f": front over {len(names)} objectives, shown on the first two"
    return title


def figure(studies: Sequence[StudyTrials], reference: Reference = None) -> Any:
    """The front plot as a matplotlib ``Figure``, the paper's Fig. 5 encoding: x = first
    objective, y = second (with one objective: y against completion order); colour =
    filter family, marker = tap count (sides = taps), filled = trained without
    augmentation, hollow = with (Fig. 5's two panels in one plot); every complete trial,
    the front larger and joined by a step line (2 objectives), one line style per study;
    points labelled by filter (all up to :data:`LABEL_ALL_UP_TO` points, else the front).
    The legend, outside the axes, gives each study's hypervolume against ``reference``
    (see :meth:`StudyTrials.reference`) and explains the encoding."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(10, 6), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    total = sum(len(t.records) for t in studies)
    sides = _better_sides(studies[0]) if studies else (1.0, 1.0)
    study_handles = []
    for index, trials in enumerate(studies):
        x, y, xlabel, ylabel = _axes_values(trials)
        mask = fr.front_mask(trials.values(), trials.directions)
        _scatter(ax, trials, x, y, mask)
        for i, record in enumerate(trials.records):
            if mask[i] or total <= LABEL_ALL_UP_TO:
                _label(ax, filter_label(record), x[i], y[i], bool(mask[i]), sides)
        style = _LINESTYLES[index % len(_LINESTYLES)]
        if len(trials.names) == 2:
            steps = fr.staircase(trials.values()[mask], trials.directions)
            ax.plot(steps[:, 0], steps[:, 1], linestyle=style, color="black", lw=1.2, zorder=1)
        elif len(trials.names) == 1:
            best = np.maximum if trials.directions[0] == "max" else np.minimum
            ax.plot(x, best.accumulate(y), linestyle=style, color="black", lw=1.2, zorder=1)
        ref = trials.reference(reference)
        hv = fr.hypervolume(trials.values(), trials.directions, ref)
        study_handles.append(
            Line2D(
                [],
                [],
                color="black",
                linestyle=style,
                label=f"{trials.study}: front {int(mask.sum())} of {len(mask)}, HV {hv:.4g}\n"
                f"  from ({', '.join(f'{v:.4g}' for v in ref)})"
                + (" = delta / none" if isinstance(reference, str) else ""),
            )
        )
        ax.set_xlabel(f"{xlabel} ({trials.directions[0]})" if len(trials.names) >= 2 else xlabel)
        ax.set_ylabel(f"{ylabel} ({trials.directions[-1 if len(trials.names) == 1 else 1]})")
    ax.legend(
        handles=[*study_handles, *_encoding_handles(studies)],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize=7,
        frameon=False,
    )
    ax.margins(0.06)
    _room_for_labels(ax, sides)
    ax.grid(alpha=0.3)
    ax.set_title(_title(studies), fontsize=10)
    return fig


def _scatter(ax: Any, trials: StudyTrials, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
    """One scatter per (family, taps, augmented, on the front): face = family colour, or
    none (hollow) for augmented trials; front points larger, filled ones edged black."""
    groups: dict[tuple[str, int | None, bool, bool], list[int]] = {}
    for i, record in enumerate(trials.records):
        key = (record.family, record.taps, record.augmented, bool(mask[i]))
        groups.setdefault(key, []).append(i)
    for (family, taps, augmented, on), members in groups.items():
        color = family_color(family)
        ax.scatter(
            x[members],
            y[members],
            s=(11 if on else 7) ** 2,
            marker=tap_marker(taps),
            facecolors="none" if augmented else color,
            edgecolors=color if augmented or not on else "black",
            linewidths=(2.2 if on else 1.4) if augmented else (1.4 if on else 0.5),
            alpha=1.0 if on else 0.6,
            zorder=3 if on else 2,
        )


def _better_sides(trials: StudyTrials) -> tuple[float, float]:
    """The plot's directions of improvement, +1 or -1 along x and y: the side of a front
    where no trial lies, so the front's labels go there."""
    signs = [1.0 if d == "max" else -1.0 for d in trials.directions]
    return (signs[0], signs[1]) if len(signs) >= 2 else (1.0, signs[0])


def _label(ax: Any, text: str, x: float, y: float, on: bool, sides: tuple[float, float]) -> None:
    """A point's filter label, on the better side in x; front points bold, on the better
    side in y too (beyond the front no point lies), others grey, on the worse side."""
    sx, sy = sides if on else (sides[0], -sides[1])
    ax.annotate(
        text,
        (x, y),
        xytext=(5 * sx, 4 * sy),
        textcoords="offset points",
        ha="left" if sx > 0 else "right",
        va="bottom" if sy > 0 else "top",
        fontsize=7,
        fontweight="bold" if on else "normal",
        color="black" if on else "dimgray",
    )


def _room_for_labels(ax: Any, sides: tuple[float, float]) -> None:
    """Widen the axes on the labels' side, so the outermost front labels stay inside the
    axes (clear of the legend beside them)."""
    for get, set_, side, extra in (
        (ax.get_xlim, ax.set_xlim, sides[0], 0.09),
        (ax.get_ylim, ax.set_ylim, sides[1], 0.03),
    ):
        low, high = get()
        pad = extra * (high - low)
        if side > 0:
            set_(low, high + pad)
        else:
            set_(low - pad, high)


def _encoding_handles(studies: Sequence[StudyTrials]) -> list[Any]:
    """Legend entries for the encoding: colour = family, sides = taps, fill = augmentation."""
    from matplotlib.lines import Line2D

    records = [record for trials in studies for record in trials.records]
    families = sorted({r.family for r in records}, key=_family_key)
    taps_seen = sorted({r.taps for r in records}, key=lambda t: -1 if t is None else t)
    kinds = sorted({r.augment for r in records if r.augmented})

    def header(text: str) -> Line2D:
        return Line2D([], [], linestyle="", marker="", label=text)

    def swatch(label: str, color: str = "gray", marker: Any = "s", hollow: bool = False) -> Line2D:
        return Line2D(
            [],
            [],
            marker=marker,
            linestyle="",
            markerfacecolor="none" if hollow else color,
            markeredgecolor=color,
            markeredgewidth=1.4 if hollow else 0.5,
            label=label,
        )

    augmentation = (
        [swatch("no augmentation (filled)")] if any(not r.augmented for r in records) else []
    )
    if kinds:
        augmentation.append(swatch(f"augmented (hollow): {', '.join(kinds)}", hollow=True))
    return [
        header("filter family (colour)"),
        *(swatch(FAMILY_LABELS.get(f, f), family_color(f)) for f in families),
        header("taps (sides)"),
        *(swatch(_taps_label(t), marker=tap_marker(t)) for t in taps_seen),
        header("training augmentation (fill)"),
        *augmentation,
    ]


def write_image(studies: Sequence[StudyTrials], path: Path, reference: Reference = None) -> Path:
    """``pareto.png`` or ``pareto.svg`` (by the suffix) of :func:`figure`."""
    figure(studies, reference).savefig(path)
    return path


def write_html(studies: Sequence[StudyTrials], path: Path) -> Path:
    """``pareto.html``: the plot of :func:`figure` in plotly, self-contained (works
    offline); hovering a point shows its filter, augmentation, run id and objectives."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for index, trials in enumerate(studies):
        x, y, xlabel, ylabel = _axes_values(trials)
        mask = fr.front_mask(trials.values(), trials.directions)
        ranks = trials.ranks()
        groups: dict[tuple[str, int | None, bool], list[int]] = {}
        for i, record in enumerate(trials.records):
            groups.setdefault((record.family, record.taps, record.augmented), []).append(i)
        for (family, taps, augmented), members in sorted(
            groups.items(), key=lambda g: (*_family_key(g[0][0]), g[0][1] or 0, g[0][2])
        ):
            records = [trials.records[i] for i in members]
            hover = [
                "<br>".join(
                    [
                        f"<b>{r.filter}</b>",
                        f"augmentation: {r.augment}",
                        f"study: {r.study}",
                        f"run id: {r.run_id}",
                        f"trial: {r.trial_id}",
                        *(f"{k}: {v:.4f}" for k, v in r.objectives.items()),
                        f"rank: {ranks[i]}" + (" (front)" if mask[i] else ""),
                    ]
                )
                for r, i in zip(records, members, strict=True)
            ]
            fig.add_trace(
                go.Scatter(
                    x=x[members],
                    y=y[members],
                    mode="markers",
                    name=f"{trials.study}: {FAMILY_LABELS.get(family, family)} "
                    f"({taps} tap{'' if taps == 1 else 's'}), "
                    + ("augmented" if augmented else "no augmentation"),
                    legendgroup=trials.study,
                    text=hover,
                    hovertemplate="%{text}<extra></extra>",
                    marker=_plotly_marker(
                        family, taps, augmented, [bool(mask[i]) for i in members]
                    ),
                )
            )
        if len(trials.names) == 2 and mask.any():
            steps = fr.staircase(trials.values()[mask], trials.directions)
            line_x, line_y = steps[:, 0], steps[:, 1]
        else:
            best = np.maximum if trials.directions[0] == "max" else np.minimum
            line_x, line_y = (x, best.accumulate(y)) if len(trials.names) == 1 else ([], [])
        fig.add_trace(
            go.Scatter(
                x=list(line_x),
                y=list(line_y),
                mode="lines",
                name=f"{trials.study}: front ({int(mask.sum())} of {len(mask)})",
                legendgroup=trials.study,
                hoverinfo="skip",
                line={"color": "black", "dash": _DASHES[index % len(_DASHES)], "width": 1.5},
            )
        )
        if len(trials.names) >= 2:
            xlabel = f"{trials.names[0]} ({trials.directions[0]})"
            ylabel = f"{trials.names[1]} ({trials.directions[1]})"
        else:
            ylabel = f"{ylabel} ({trials.directions[0]})"
        fig.update_layout(xaxis_title=xlabel, yaxis_title=ylabel)
    fig.update_layout(
        title=_title(studies),
        template="plotly_white",
        hovermode="closest",
        legend_title_text="colour: family, sides: taps<br>" + "<br>".join(AUGMENTATION_LEGEND),
    )
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def _plotly_marker(
    family: str, taps: int | None, augmented: bool, on_front: list[bool]
) -> dict[str, Any]:
    """Plotly's marker for one group: symbol by taps, ``-open`` (hollow) when augmented;
    front points larger, filled ones edged black, hollow ones with a thicker outline."""
    color = family_color(family)
    return {
        "symbol": _tap_symbol(taps, augmented),
        "color": color,
        "size": [14 if on else 9 for on in on_front],
        "opacity": 0.9,
        "line": {
            "width": [(2.5 if on else 1.5) if augmented else (2 if on else 0) for on in on_front],
            "color": color if augmented else "black",
        },
    }


def _taps_label(taps: int | None) -> str:
    if taps is None:
        return "no fixed taps (own low-pass)"
    return "1 tap" if taps == 1 else f"{taps} taps"


def _family_key(family: str) -> tuple[int, str]:
    order = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return order, family


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
    rows = sorted(filters.values(), key=lambda r: (*_family_key(r.family), r.taps or 0, r.filter))
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


def export(
    studies: Sequence[StudyTrials],
    out: Path,
    formats: Sequence[str] = FORMATS,
    reference: Reference = None,
) -> list[Path]:
    """Write ``formats`` for ``studies`` into ``out`` (created); returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in formats:
        if fmt == "csv":
            written += write_csv(studies, out)
        elif fmt == "json":
            written.append(write_json(studies, out / "pareto.json", reference))
        elif fmt in ("png", "svg"):
            written.append(write_image(studies, out / f"pareto.{fmt}", reference))
        elif fmt == "html":
            written.append(write_html(studies, out / "pareto.html"))
        elif fmt == "md":
            written.append(write_table(studies, out / "table.md"))
        else:
            raise ValueError(f"format: {fmt!r}; allowed: {', '.join(FORMATS)}")
    return written
