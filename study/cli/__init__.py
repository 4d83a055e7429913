"""The ``study`` command line.

Every input is validated before any work starts; a bad one prints a single line,
``study: error: <field>: <what is wrong; what is allowed>``, and exits with code 2.
Each command is a pair in :data:`COMMANDS`: a function adding its arguments and one
running it (modules :mod:`~study.cli.explore`, :mod:`~study.cli.train`,
:mod:`~study.cli.studies`, and :mod:`study.pareto.command`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from study import __version__
from study.cli import explore, studies, train
from study.cli.common import EXIT_USAGE, UsageError
from study.inputs import one_line
from study.pareto import command as pareto_command

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], "int | None"]

#: name, help (also the description of ``study NAME --help``), arguments, what runs it
COMMANDS: tuple[tuple[str, str, Configure, Run], ...] = (
    (
        "demo",
        "show anti-aliasing at work on built-in data (about a minute)",
        explore.configure_demo,
        explore.demo,
    ),
    (
        "filters",
        "describe filter specs (default: the paper's Table 1)",
        explore.configure_filters,
        explore.filters_command,
    ),
    ("models", "list the registered networks", explore.configure_models, explore.models_command),
    (
        "trial",
        "train and evaluate one configuration, without Ray; resumes an interrupted --out",
        train.configure_trial,
        train.trial,
    ),
    (
        "run",
        "run a study: Ray Tune trials, Optuna sampling, MLflow tracking",
        studies.configure_run,
        studies.run,
    ),
    (
        "resume",
        "continue an interrupted study: done trials stay done, the sampler keeps its state",
        studies.configure_resume,
        studies.resume,
    ),
    (
        "list",
        "the studies a tracking store knows, newest first",
        studies.configure_list,
        studies.list_studies,
    ),
    (
        "status",
        "a study's progress and current Pareto front, read from MLflow (read-only)",
        studies.configure_status,
        studies.status,
    ),
    (
        "ui",
        "open a study in the MLflow UI (started on the study's store; Ctrl-C stops it)",
        studies.configure_ui,
        studies.ui,
    ),
    (
        "pareto",
        "export studies' Pareto fronts from MLflow (csv, json, png, svg, html, md)",
        pareto_command.configure,
        pareto_command.main,
    ),
    (
        "report",
        "evaluate a saved checkpoint: all-shift metrics (JSON) and their figures (PNG)",
        train.configure_report,
        train.report,
    ),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help()
            return EXIT_USAGE
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
        return args.run(args) or 0
    except UsageError as error:
        print(f"study: error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # validation errors of filters, models, layers
        print(f"study: error: {one_line(str(error), first_line_only=True)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("study: interrupted", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="study",
        description="Hyperparameter studies for anti-aliased CNNs "
        "(Zhang, 'Making Convolutional Networks Shift-Invariant Again').",
    )
    parser.add_argument("--version", action="version", version=f"study {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at INFO level, with Ray's, Tune's and Optuna's own output",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, help, configure, run in COMMANDS:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        configure(sub)
    return parser


__all__ = ["COMMANDS", "EXIT_USAGE", "UsageError", "main"]
