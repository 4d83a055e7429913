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

from collections.abc import Sequence
from pathlib import Path

from study.pareto.plots import write_html, write_image
from study.pareto.records import Reference, StudyTrials
from study.pareto.tables import write_csv, write_json, write_table

FORMATS = ("csv", "json", "png", "svg", "html", "md")
FILES = {
    "csv": ("pareto.csv", "trials.csv"),
    "json": ("pareto.json",),
    "png": ("pareto.png",),
    "svg": ("pareto.svg",),
    "html": ("pareto.html",),
    "md": ("table.md",),
}


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
