"""The Pareto plots: ``pareto.png``/``pareto.svg`` (matplotlib) and ``pareto.html``
(plotly, self-contained), in the encoding of :mod:`study.pareto.encoding`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from study.pareto import front as fr
from study.pareto.encoding import (
    AUGMENTATION_LEGEND,
    DASHES,
    FAMILY_LABELS,
    LABEL_ALL_UP_TO,
    LINESTYLES,
    family_color,
    family_key,
    filter_label,
    tap_marker,
    tap_symbol,
    taps_label,
)
from study.pareto.records import Reference, StudyTrials


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
        style = LINESTYLES[index % len(LINESTYLES)]
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
    families = sorted({r.family for r in records}, key=family_key)
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
        *(swatch(taps_label(t), marker=tap_marker(t)) for t in taps_seen),
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
            groups.items(), key=lambda g: (*family_key(g[0][0]), g[0][1] or 0, g[0][2])
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
                line={"color": "black", "dash": DASHES[index % len(DASHES)], "width": 1.5},
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
        "symbol": tap_symbol(taps, augmented),
        "color": color,
        "size": [14 if on else 9 for on in on_front],
        "opacity": 0.9,
        "line": {
            "width": [(2.5 if on else 1.5) if augmented else (2 if on else 0) for on in on_front],
            "color": color if augmented else "black",
        },
    }
