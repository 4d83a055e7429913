"""One matplotlib figure per metric, for reports and for MLflow to log.

Every function takes a mapping ``label -> result`` (one entry per network or filter,
drawn side by side or overlaid in the paper's style) and returns a
:class:`matplotlib.figure.Figure`, made without pyplot so that no global state is
touched: save it with ``fig.savefig(path)`` or log it with ``mlflow.log_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor


def _numpy(values: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


def _check(results: Mapping, what: str) -> None:
    if not results:
        raise ValueError(f"{what}: give at least one labelled result to plot")


def variation_histogram(per_image: Mapping[str, Tensor], bins: int = 40) -> Figure:
    """Fig. 6: distribution over images of the classification variation (the per-image
    standard deviation of P(correct class) over shifts), one outline per label.
    ``per_image[label]`` is ``variation(probs, labels)["per_image"]``."""
    _check(per_image, "per_image")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    top = max(float(_numpy(v).max(initial=0)) for v in per_image.values()) or 1.0
    edges = np.linspace(0, top, bins + 1)
    for label, values in per_image.items():
        values = _numpy(values)
        ax.hist(values, edges, histtype="step", lw=1.4, label=f"{label} (mean {values.mean():.3f})")
    ax.set(
        xlabel="std of P(correct class) over shifts",
        ylabel="images",
        title="classification variation (Fig. 6)",
    )
    ax.legend(fontsize=7)
    return fig


def shift_heatmap(heatmaps: Mapping[str, Tensor]) -> Figure:
    """Appendix D, Fig. 11: accuracy at each circular shift ``(dh, dw)``, one panel per
    label, on a shared colour scale. ``heatmaps[label]`` is ``(H, W)``, from
    ``accuracy_by_shift(...)["heatmap"]``."""
    _check(heatmaps, "heatmaps")
    maps = {label: _numpy(m) for label, m in heatmaps.items()}
    low = min(float(m.min()) for m in maps.values())
    high = max(float(m.max()) for m in maps.values())
    fig = Figure(figsize=(3.2 * len(maps) + 0.8, 3.3), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for ax, (label, values) in zip(axes, maps.items(), strict=True):
        image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high)
        ax.set(title=f"{label}\nmean {values.mean():.3f}", xlabel="dw", ylabel="dh")
    fig.colorbar(image, ax=list(axes), label="accuracy")
    return fig


def diagonal_curve(diagonals: Mapping[str, Tensor]) -> Figure:
    """Appendix D, Fig. 11: accuracy at the diagonal shifts ``(d, d)``, one line per
    label. ``diagonals[label]`` is ``accuracy_by_shift(...)["diagonal"]``."""
    _check(diagonals, "diagonals")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for label, values in diagonals.items():
        values = _numpy(values)
        ax.plot(np.arange(len(values)), values, marker=".", lw=1.2, label=label)
    ax.set(xlabel="diagonal shift d (pixels)", ylabel="accuracy", title="accuracy at shift (d, d)")
    ax.legend(fontsize=7)
    return fig


def adversarial_curve(curves: Mapping[str, Tensor]) -> Figure:
    """Appendix B, Fig. 9: accuracy when an adversary may pick any shift in
    ``[-k, k]^2``, against ``k``. ``curves[label]`` is :func:`adversarial_accuracy`."""
    _check(curves, "curves")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for label, values in curves.items():
        values = _numpy(values)
        ax.plot(np.arange(len(values)), values, marker=".", lw=1.2, label=label)
    ax.set(
        xlabel="max adversarial shift k (pixels)",
        ylabel="accuracy",
        title="accuracy under a shift adversary (Fig. 9)",
        ylim=(0, None),
    )
    ax.legend(fontsize=7)
    return fig


def distance_grid(maps: Mapping[str, Mapping], kind: str = "equivariance") -> Figure:
    """Fig. 4: one row per label, one small heatmap per layer: the normalised feature
    distance at each shift, from :func:`~study.metrics.features.feature_distance_maps`.
    ``kind`` is ``"equivariance"`` (eq. 1) or ``"invariance"`` (eq. 2). Blue is 0, red
    is half the mean distance between different images, as in the paper."""
    _check(maps, "maps")
    if kind not in ("equivariance", "invariance"):
        raise ValueError(f"kind: {kind!r} is not one of equivariance, invariance")
    columns = max(len(result["layers"]) for result in maps.values())
    fig = Figure(figsize=(1.15 * columns + 0.6, 1.55 * len(maps) + 0.3), layout="constrained")
    axes = fig.subplots(len(maps), columns, squeeze=False)
    for row, (label, result) in zip(axes, maps.items(), strict=True):
        values = _numpy(result[kind])
        for ax, layer, resolution, grid in zip(
            row, result["layers"], result["resolution"], values, strict=False
        ):
            image = ax.imshow(grid, cmap="bwr", vmin=0, vmax=0.5)
            ax.set_title(f"{layer}\n[{resolution[0]}x{resolution[1]}]", fontsize=5)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=7)
        for ax in row[len(result["layers"]) :]:
            ax.axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="distance / (image distance)")
    fig.suptitle(f"feature {kind} at each shift (Fig. 4)", fontsize=9)
    return fig


def tv_by_layer(tvs: Mapping[str, Mapping[str, float]]) -> Figure:
    """Fig. 7: mean normalised total variation of the learned filters of each layer,
    one line per label (``tvs[label]`` is :func:`total_variation`); lower is smoother."""
    _check(tvs, "tvs")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    names: list[str] = []
    for result in tvs.values():
        names += [name for name in result if name not in names]
    for label, result in tvs.items():
        ax.plot(
            [names.index(n) for n in result],
            list(result.values()),
            marker="o",
            ms=3,
            lw=1.2,
            label=label,
        )
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=6)
    ax.set(ylabel="normalised TV (lower is smoother)", title="filter smoothness by layer (Fig. 7)")
    ax.legend(fontsize=7)
    return fig


def family_heatmaps(grids: Mapping[str, Mapping[str, Tensor]]) -> Figure:
    """Accuracy at each offset of the crop and sub-pixel shift families
    (:mod:`study.metrics.families`), one row per label, one panel per family, on a shared
    colour scale; each panel's title gives the mean and the hardest offset's accuracy.
    ``grids[label][family]`` is ``evaluate(...)["offset_accuracy_<family>"]``: ``(2m + 1,
    2m + 1)`` for ``crop`` (offsets ``-m .. m``), ``(q, q)`` for ``subpixel``
    (offsets ``0, 1/q, ..``)."""
    _check(grids, "grids")
    families = sorted({family for panels in grids.values() for family in panels})
    maps = {(label, f): _numpy(p[f]) for label, p in grids.items() for f in families if f in p}
    low = min(float(m.min()) for m in maps.values())
    high = max(float(m.max()) for m in maps.values())
    fig = Figure(figsize=(3.2 * len(families) + 0.8, 3.1 * len(grids)), layout="constrained")
    axes = fig.subplots(len(grids), len(families), squeeze=False)
    for row, label in enumerate(grids):
        for col, family in enumerate(families):
            ax = axes[row, col]
            if (label, family) not in maps:
                ax.set_axis_off()
                continue
            values = maps[label, family]
            side = values.shape[0]
            if family == "crop":
                margin = (side - 1) // 2
                extent, unit = (-margin - 0.5, margin + 0.5, margin + 0.5, -margin - 0.5), "px"
            else:
                extent, unit = (-0.5 / side, 1 - 0.5 / side, 1 - 0.5 / side, -0.5 / side), "px"
            image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high, extent=extent)
            ax.set(
                title=f"{family}: mean {values.mean():.3f}, hardest offset {values.min():.3f}",
                xlabel=f"dx ({unit})",
                ylabel=f"{label}\ndy ({unit})" if col == 0 and len(grids) > 1 else f"dy ({unit})",
            )
            ax.title.set_fontsize(9)
    if len(grids) == 1:
        fig.suptitle(next(iter(grids)), fontsize=10)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="accuracy")
    return fig


#: The figures a study draws for every trial when told ``essential``: what a reader
#: looks at first. ``study report CHECKPOINT`` draws them all for any trial later.
ESSENTIAL = ("shift_heatmap", "shift_families")


def report_figures(
    results: Mapping[str, Mapping], only: Sequence[str] | None = None
) -> dict[str, Figure]:
    """The figures for a report: ``results[label]`` is a result of
    :func:`study.metrics.evaluate` (a figure whose entries are missing is skipped);
    ``only`` names the figures to draw (default: all)."""

    def having(key: str) -> dict:
        return {label: r[key] for label, r in results.items() if r.get(key) is not None}

    families = {
        label: {
            key.removeprefix("offset_accuracy_"): value
            for key, value in r.items()
            if key.startswith("offset_accuracy_") and value is not None
        }
        for label, r in results.items()
    }
    families = {label: panels for label, panels in families.items() if panels}
    makers = {
        "variation_histogram": (variation_histogram, having("variation_per_image")),
        "shift_heatmap": (shift_heatmap, having("accuracy_heatmap")),
        "shift_families": (family_heatmaps, families),
        "diagonal_curve": (diagonal_curve, having("accuracy_diagonal")),
        "adversarial_curve": (adversarial_curve, having("adversarial_accuracy")),
        "distance_grid": (distance_grid, having("feature_distance")),
        "tv_by_layer": (tv_by_layer, having("total_variation")),
    }
    if only is not None:
        makers = {name: maker for name, maker in makers.items() if name in only}
    return {name: make(data) for name, (make, data) in makers.items() if data}


__all__ = [
    "ESSENTIAL",
    "adversarial_curve",
    "diagonal_curve",
    "distance_grid",
    "family_heatmaps",
    "report_figures",
    "shift_heatmap",
    "tv_by_layer",
    "variation_histogram",
]
