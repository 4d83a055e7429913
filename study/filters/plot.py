"""Figures of filter designs."""

from __future__ import annotations

from collections.abc import Iterable

from study.filters import Spec, parse, response


def plot_responses(specs: Iterable[Spec], ax=None, n: int = 512):
    """Plot ``|H|`` of each spec against frequency (fraction of Nyquist); returns the figure.

    Draws on ``ax`` when given, else on a new figure. A dotted line marks half Nyquist,
    the band that survives subsampling by 2 without aliasing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for spec in specs:
        frequency, h = response(spec, n)
        ax.plot(frequency, abs(h), label=str(parse(spec)), lw=1.2)
    ax.set(xlabel="frequency (fraction of Nyquist)", ylabel="|H|", title="filter response")
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=6, ncol=2 if len(ax.lines) > 8 else 1)
    return ax.figure
