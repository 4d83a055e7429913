"""Figures of filter designs, made without pyplot (no backend switched, no global state)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from study.filters import Spec, parse, response

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_responses(specs: Iterable[Spec], ax: Axes | None = None, n: int = 512) -> Figure:
    """Plot ``|H|`` of each spec against frequency (fraction of Nyquist); returns the figure.

    Draws on ``ax`` when given (and returns the figure holding it), else on a new
    :class:`matplotlib.figure.Figure`: save it with ``fig.savefig(path)``, log it with
    ``mlflow.log_figure``, or show it in a notebook as it is. A dotted line marks half
    Nyquist, the band that survives subsampling by 2 without aliasing.

    >>> fig = plot_responses(["delta", "binomial-5"])
    >>> [line.get_label() for line in fig.axes[0].lines[:2]]
    ['delta', 'binomial-5']
    """
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(7, 4.5), layout="constrained").add_subplot()
    for spec in specs:
        frequency, h = response(spec, n)
        ax.plot(frequency, abs(h), label=str(parse(spec)), lw=1.2)
    ax.set(xlabel="frequency (fraction of Nyquist)", ylabel="|H|", title="filter response")
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=6, ncol=2 if len(ax.lines) > 8 else 1)
    return ax.get_figure(root=True)
