"""``study pareto NAME [NAME ...]``: export studies' Pareto fronts from MLflow.

Wired into ``study`` as a row of :data:`study.cli.COMMANDS`: :func:`configure` adds the
arguments, :func:`main` runs it.

Every flag is checked before anything is read or written; a bad one prints one line,
``study pareto: error: <field>: <problem>``, and returns 2. Only ``argparse`` and the
standard library are imported here: MLflow, numpy and matplotlib load inside :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from study.inputs import one_line, output_folder_problem

EXIT_USAGE = 2
EXIT_FAILURE = 1
PREFIX = "study pareto"
DELTA = "delta"
"""``--reference delta`` (:data:`study.pareto.records.DELTA_REFERENCE`)."""
FORMATS = ("csv", "json", "png", "svg", "html", "md")


class _Usage(Exception):
    """A bad flag: ``<field>: <problem>``."""


_INDENT = " " * len("usage: study pareto ")
USAGE = (
    "%(prog)s NAME [NAME ...] --out DIR\n"
    f"{_INDENT}[--objectives NAME:DIR,...] [--format FMT,...]\n"
    f"{_INDENT}[--reference X,Y,...|delta] [--tracking-uri URI]"
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``study pareto``'s arguments to ``parser`` (a subcommand parser).

    ``--out`` is required: the usage line and ``--help`` say so, and :func:`main` checks
    it (with the other flags, in one line) rather than argparse, whose own error is a
    usage block."""
    parser.usage = USAGE
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="study names (parent runs tagged study.name=NAME); several share one plot",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    parser.add_argument(
        "--objectives",
        default=None,
        metavar="NAME:DIR,...",
        help="objectives as final metrics with max or min, e.g. test_acc:max,"
        "test_consistency:max (the paper's Fig. 5); the first two are the plot's x and y "
        "(default: the studies' own objectives)",
    )
    required = parser.add_argument_group("required")
    required.add_argument("--out", metavar="DIR", help="output folder, created (required)")
    parser.add_argument(
        "--format",
        dest="formats",
        default=",".join(FORMATS),
        metavar="FMT,...",
        help=f"any of {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="export simulated studies too (their metrics are closed-form, nothing was "
        "trained; refused without this flag so that no such front passes for a result)",
    )
    parser.add_argument(
        "--reference",
        metavar="X,Y,...|delta",
        help="hypervolume reference point: one number per objective in its units, or "
        "'delta': each study's own unblurred, unaugmented trial (filter delta, augmentation "
        "none; their mean if several), so the hypervolume measures the gain over that "
        "baseline. Default: 0 for maximised accuracies/consistency, 1 for minimised "
        "variation, else the worst value among the complete trials. That origin is fixed "
        "(a running study's hypervolume never drops) but far from every trial: the "
        "hypervolume is then about best accuracy x best consistency, about 0.92 for every "
        "CIFAR-10 study, so compare studies with 'delta'",
    )


def _check(args: argparse.Namespace) -> dict[str, Any]:
    """Every flag, validated; raises :class:`_Usage`."""
    from study.pareto.front import parse_objectives

    names = list(getattr(args, "names", None) or [])
    if not names:
        raise _Usage("name: give at least one study name")
    for name in names:
        if not name.strip() or any(c in name for c in "'\"\n"):
            raise _Usage(f"name: {name!r} is not a study name (no quotes, not empty)")
    if len(set(names)) != len(names):
        raise _Usage(f"name: a study is given twice ({' '.join(names)})")
    objectives = None
    if args.objectives is not None:
        try:
            objectives = parse_objectives(args.objectives)
        except ValueError as error:
            raise _Usage(str(error)) from None
    formats = [part.strip().lower() for part in (args.formats or "").split(",") if part.strip()]
    if not formats:
        raise _Usage(f"format: empty; allowed: {','.join(FORMATS)}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise _Usage(f"format: {fmt!r} is not one of {','.join(FORMATS)}")
    formats = list(dict.fromkeys(formats))
    reference: list[float] | str | None = None
    if args.reference is not None and args.reference.strip().lower() == DELTA:
        reference = DELTA
    elif args.reference is not None:
        parts = [part.strip() for part in args.reference.split(",")]
        try:
            reference = [float(part) for part in parts]
        except ValueError:
            raise _Usage(f"reference: {args.reference!r} is not comma-separated numbers") from None
        if objectives is not None and len(reference) != len(objectives):
            raise _Usage(
                f"reference: {len(reference)} numbers for {len(objectives)} objectives "
                f"({', '.join(objectives)})"
            )
        if not all(math.isfinite(v) for v in reference):
            raise _Usage("reference: every number must be finite")
    if not args.out:
        raise _Usage("out: required (--out DIR)")
    out = Path(args.out)
    if (problem := output_folder_problem(out)) is not None:
        raise _Usage(f"out: {problem}")
    return {
        "names": names,
        "objectives": objectives,
        "formats": formats,
        "reference": reference,
        "out": out,
    }


def _same_objectives(studies: list[Any]) -> None:
    """Studies plotted together must share their objectives (say them with
    ``--objectives`` when they differ)."""
    seen = {tuple(trials.objectives.items()) for trials in studies}
    if len(seen) > 1:
        shown = "; ".join(f"{t.study}: {','.join(t.names)}" for t in studies)
        from study.pareto.store import ParetoError

        raise ParetoError(
            f"objectives: the studies optimise different metrics ({shown}); "
            "choose with --objectives NAME:DIR,..."
        )


def _check_reference(studies: list[Any], reference: list[float] | str | None) -> None:
    """Numbers, one per objective; or ``delta``, which every study must have a trial for."""
    from study.pareto.store import ParetoError

    if isinstance(reference, list) and len(reference) != len(studies[0].objectives):
        raise ParetoError(
            f"reference: {len(reference)} numbers for {len(studies[0].objectives)} "
            f"objectives ({', '.join(studies[0].names)})"
        )
    if isinstance(reference, str):
        for trials in studies:
            try:
                trials.reference(reference)
            except ValueError as error:
                raise ParetoError(str(error)) from None


def _quiet() -> None:
    """Keep MLflow's and the database layer's INFO lines off stderr."""
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _summary(trials: Any, reference: list[float] | str | None) -> list[str]:
    ref = trials.reference(reference)
    front = trials.front()
    stopped = trials.statuses.get("PRUNED", 0)
    failed = sum(n for state, n in trials.statuses.items() if state not in ("FINISHED", "PRUNED"))
    lines = [
        f"{trials.study}: {len(trials.records)} complete trials"
        + (f" ({stopped} stopped early, left out)" if stopped else "")
        + (f" ({failed} not finished)" if failed else "")
        + (f" ({trials.missing} finished without the objectives)" if trials.missing else "")
        + f", front of {len(front)}, hypervolume {trials.hypervolume(ref):.6g} "
        f"at reference ({', '.join(f'{v:g}' for v in ref)})"
        + (" = delta / none" if isinstance(reference, str) else "")
    ]
    from study.pareto.tables import REPORTED_TEST

    for record in sorted(front, key=lambda r: [-r.objectives[n] for n in trials.objectives]):
        values = "  ".join(f"{k}={v:.4f}" for k, v in record.objectives.items())
        reported = [n for n in REPORTED_TEST if n not in record.objectives and n in record.metrics]
        if reported:
            values += "  | " + "  ".join(f"{n}={record.metrics[n]:.4f}" for n in reported)
        lines.append(f"  {record.filter:<28} {record.augment:<12} {values}  run {record.run_id}")
    return lines


def main(args: argparse.Namespace) -> int:
    """Run ``study pareto``; returns the exit code (0 ok, 2 bad input, 1 write failure)."""
    try:
        checked = _check(args)
    except _Usage as error:
        print(f"{PREFIX}: error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE

    from study.mlflow_layout import tracking_uri
    from study.pareto import export, store

    _quiet()
    uri = tracking_uri(args.tracking_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = store.connect(uri)
            studies = [
                store.load_study(uri, name, checked["objectives"], client=client)
                for name in checked["names"]
            ]
            _same_objectives(studies)
            _check_reference(studies, checked["reference"])
            simulated = [s.study for s in studies if s.simulated]
            if simulated and not args.simulated:
                raise store.ParetoError(
                    f"name: study {simulated[0]!r} is simulated (closed-form metrics, nothing"
                    " trained: study.trial.simulated); pass --simulated to export it anyway"
                )
    except store.ParetoError as error:
        print(f"{PREFIX}: error: {one_line(str(error), first_line_only=True)}", file=sys.stderr)
        return EXIT_USAGE

    out: Path = checked["out"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = export.export(studies, out, checked["formats"], checked["reference"])
    except OSError as error:
        print(
            f"{PREFIX}: error: {one_line(f'out: cannot write to {out} ({error})')}", file=sys.stderr
        )
        return EXIT_FAILURE

    print(f"{PREFIX}: wrote {', '.join(p.name for p in written)} to {out}")
    for trials in studies:
        for line in _summary(trials, checked["reference"]):
            print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m study.pareto.command``), for use before wiring."""
    parser = argparse.ArgumentParser(
        prog=PREFIX, description="Export studies' Pareto fronts from MLflow (Fig. 5, Table 1)."
    )
    configure(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
