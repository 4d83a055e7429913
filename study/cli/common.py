"""What every ``study`` command shares: the usage error (one line, exit 2), the flags
several commands take, and the output-folder check."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """A user-facing input error: printed as one line, exit code 2."""


def tracking_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )


def address_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        help=(
            "Ray cluster address, or 'local' for a new private instance (default:"
            " $RAY_ADDRESS, else a `ray start` cluster on this machine, else a local one)"
        ),
    )
    parser.add_argument(
        "--ray-dashboard",
        action="store_true",
        help="start a local Ray instance with its dashboard (off by default: it takes "
        "seconds to start and a share of the CPUs; a cluster keeps its own)",
    )


def set_flag(parser: argparse.ArgumentParser, example: str, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a value of the {what}, e.g. --set {example} (repeatable)",
    )


def check_out_dir(path: Path, field: str) -> None:
    """A usage error naming ``field`` if ``path`` cannot be an output folder."""
    from study.inputs import output_folder_problem

    if (problem := output_folder_problem(path)) is not None:
        raise UsageError(f"{field}: {problem}")
