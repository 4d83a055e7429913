"""The ``study`` command line.

Every input is validated before any work starts; a bad one prints a single line,
``study: error: <field>: <what is wrong; what is allowed>``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from study import __version__
from study.inputs import one_line

EXIT_USAGE = 2


class UsageError(Exception):
    """A user-facing input error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``study`` console script."""
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


def _tracking_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )


def _address_flag(parser: argparse.ArgumentParser) -> None:
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

    def command(name: str, help: str, run: Callable[[argparse.Namespace], int | None]):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    demo = command("demo", "show anti-aliasing at work on built-in data (about a minute)", _demo)
    demo.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)"
    )
    demo.add_argument("--model", default="vgg13_bn", help="network (see `study models`)")
    demo.add_argument(
        "--width", type=float, default=0.25, help="channel width multiplier (default: 0.25)"
    )
    demo.add_argument(
        "--filters",
        default=None,
        help="semicolon- or comma-separated filter specs, baseline first "
        "(default: delta,rect-2,triangle-3,binomial-5,binomial-7)",
    )
    demo.add_argument("--images", type=int, default=32, help="number of images (default: 32)")
    demo.add_argument(
        "--max-shift", type=int, default=8, help="shifts 0..N-1 in each direction (default: 8)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of images and weights")

    show = command("filters", "describe filter specs (default: the paper's Table 1)", _filters)
    show.add_argument(
        "specs", nargs="*", metavar="SPEC", help="e.g. binomial-5 'firwin(taps=5, cutoff=0.4)'"
    )
    show.add_argument(
        "--plot", type=Path, help="write the frequency responses to this PNG/SVG/PDF file"
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")

    command("models", "list the registered networks", _models)

    trial = command(
        "trial",
        "train and evaluate one configuration, without Ray; resumes an interrupted --out",
        _trial,
    )
    trial.add_argument(
        "config",
        type=Path,
        metavar="CONFIG",
        help="YAML trial config or search-space file with every choice fixed",
    )
    trial.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.05 (repeatable)",
    )
    trial.add_argument(
        "--out", type=Path, required=True, help="output folder (resumed if it holds a checkpoint)"
    )
    trial.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    run = command(
        "run",
        "run a study: Ray Tune trials, Optuna sampling, MLflow tracking",
        _run,
    )
    run.add_argument("space", type=Path, metavar="SPACE", help="search-space YAML file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the space, e.g. --set study.trials=20 (repeatable)",
    )
    run.add_argument("--name", help="study name (default: study.name, else the file's stem)")
    run.add_argument(
        "--from",
        dest="warm_from",
        metavar="OLD",
        help="warm start: copy the complete trials of the earlier study OLD into this one "
        "before sampling (same objectives; trials outside this space are left out)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved plan (trials, resources, storages, tracking) and exit; "
        "nothing is started or written",
    )
    _tracking_flag(run)
    _address_flag(run)

    resume = command(
        "resume",
        "continue an interrupted study: done trials stay done, the sampler keeps its state",
        _resume,
    )
    resume.add_argument("name", metavar="NAME", help="the study's name")
    _tracking_flag(resume)
    _address_flag(resume)
    resume.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="the Optuna storage URL with its password, for a study recorded with it "
        "redacted (default: $STUDY_OPTUNA_STORAGE; better: PGPASSWORD or ~/.pgpass)",
    )

    listing = command("list", "the studies a tracking store knows, newest first", _list)
    _tracking_flag(listing)

    status = command(
        "status",
        "a study's progress and current Pareto front, read from MLflow (read-only)",
        _status,
    )
    status.add_argument("name", metavar="NAME", help="the study's name")
    _tracking_flag(status)

    browse = command(
        "ui",
        "open a study in the MLflow UI (started on the study's store; Ctrl-C stops it)",
        _ui,
    )
    browse.add_argument(
        "name", metavar="NAME", nargs="?", help="the study to open (default: the list)"
    )
    _tracking_flag(browse)
    browse.add_argument("--host", default="127.0.0.1", help="address to listen on")
    browse.add_argument("--port", type=int, default=5000, help="MLflow UI port (default: 5000)")
    browse.add_argument(
        "--optuna",
        action="store_true",
        help="also optuna-dashboard on the study's Optuna storage (where it is installed)",
    )
    browse.add_argument(
        "--optuna-port", type=int, default=8080, help="optuna-dashboard port (default: 8080)"
    )

    from study.pareto import command as pareto_command

    pareto = command(
        "pareto",
        "export studies' Pareto fronts from MLflow (csv, json, png, svg, html, md)",
        pareto_command.main,
    )
    pareto_command.configure(pareto)

    report = command(
        "report",
        "evaluate a saved checkpoint: all-shift metrics (JSON) and their figures (PNG)",
        _report,
    )
    report.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a .pt checkpoint")
    report.add_argument("--out", type=Path, required=True, help="output folder")
    report.add_argument(
        "--data",
        default="noise",
        help="cifar10, cifar100 (downloaded), a CIFAR folder (cifar-10-batches-py), "
        "an image-folder tree or its .tar.gz, "
        "or 'noise' for pink noise labelled by the model itself (default: noise)",
    )
    report.add_argument("--split", default="test", help="train or test (default: test)")
    report.add_argument(
        "--images", type=int, default=1000, help="images to evaluate, 0 = all (default: 1000)"
    )
    report.add_argument(
        "--method",
        default="auto",
        help="all-shift evaluation: auto, polyphase or naive (default: auto)",
    )
    report.add_argument(
        "--feature-images",
        type=int,
        default=8,
        help="images for the per-layer distance maps, 0 = skip (default: 8)",
    )
    report.add_argument(
        "--feature-shifts",
        type=int,
        default=None,
        help="distance maps over shifts 0..N-1 (default: all H x W)",
    )
    report.add_argument(
        "--no-timing", action="store_true", help="skip the forward-time overhead (Table 2)"
    )
    report.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    report.add_argument("--seed", type=int, default=0, help="seed of image choice and shifts")
    return parser


def _split_specs(text: str) -> tuple[str, ...]:
    """Filter specs separated by ';', or by ',' outside parentheses and brackets."""
    if ";" in text:
        parts = text.split(";")
    else:
        parts, depth, current = [], 0, ""
        for char in text:
            depth += (char in "([") - (char in ")]")
            if char == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
    return tuple(p.strip() for p in parts if p.strip())


def _check_out_dir(path: Path, field: str) -> None:
    from study.inputs import output_folder_problem

    if (problem := output_folder_problem(path)) is not None:
        raise UsageError(f"{field}: {problem}")


def _demo(args: argparse.Namespace) -> int:
    from study import filters, models
    from study.demo import DemoConfig, format_table, run_demo

    specs = DemoConfig().filters if args.filters is None else _split_specs(args.filters)
    if not specs:
        raise UsageError("--filters: give at least one filter spec, e.g. delta,binomial-5")
    for spec in specs:
        try:
            filters.parse(spec)
        except filters.FilterSpecError as error:
            raise UsageError(str(error.under("--filters"))) from None
    if args.model not in models.MODELS:
        allowed = ", ".join(models.available_models())
        raise UsageError(f"--model: unknown network {args.model!r}; allowed: {allowed}")
    if not 0 < args.width <= 4:
        raise UsageError(f"--width: {args.width} is outside (0, 4]")
    if not 2 <= args.images <= 4096:
        raise UsageError(f"--images: {args.images} is outside 2 to 4096")
    if not 1 <= args.max_shift <= 32:
        raise UsageError(f"--max-shift: {args.max_shift} is outside 1 to 32")
    _check_out_dir(args.out, "--out")
    config = DemoConfig(args.model, args.width, specs, args.images, args.max_shift, args.seed)
    results = run_demo(config, args.out)
    toy = results["toy_example"]
    print("Toy example (Section 3.2, Fig. 3): signal [0,0,1,1,0,0,1,1] and shifted by one")
    for name in ("delta", "triangle-3"):
        print(f"  {name:<11} {toy[name]}  shifted: {toy[name + ' shifted']}")
    print()
    print(f"Shift-invariance of a freshly initialised {args.model} (width {args.width}),")
    print(f"{args.images} pink-noise images, all {args.max_shift}x{args.max_shift} circular shifts")
    print("(feature distance, normalised by the distance between different images; 0 = invariant):")
    print(format_table(results))
    print(f"\nwrote {args.out / 'demo.json'} and {args.out / 'demo.png'}")
    return 0


def _filters(args: argparse.Namespace) -> int:
    from study import filters

    if args.plot is not None:
        if args.plot.suffix.lower() not in {".png", ".svg", ".pdf"}:
            raise UsageError(f"--plot: {args.plot} must end in .png, .svg or .pdf")
        _check_out_dir(args.plot.parent, "--plot")
    named = {str(s): s for s in filters.TABLE1.values()}
    if args.specs:
        named = {}
        for text in args.specs:
            try:
                spec = filters.parse(text)
            except filters.FilterSpecError as error:
                raise UsageError(str(error.under("SPEC"))) from None
            named[str(spec)] = spec
    rows = [filters.describe(spec) for spec in named.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'filter':<58} {'taps':>4} {'-3dB':>6} {'|H(Nyq)|':>8}  weights")
        for row in rows:
            weights = ", ".join(f"{w:.4f}" for w in row["weights"])
            numbers = f"{row['taps']:>4} {row['cutoff_3db']:>6.3f} {row['nyquist_gain']:>8.3f}"
            print(f"{row['filter']:<58} {numbers}  [{weights}]")
    if args.plot is not None:
        from study.filters.plot import plot_responses

        plot_responses(named.values()).savefig(args.plot, dpi=130)
        print(f"wrote {args.plot}")
    return 0


def _trial(args: argparse.Namespace) -> int:
    from study.data import describe_source
    from study.data.dataset import BUILTIN
    from study.data.sources import DOWNLOADABLE
    from study.trial.config import load_config
    from study.trial.run import TrialFailed, resolve_device, run_trial

    config, _ = load_config(args.config, args.overrides)  # ConfigError: one line, exit 2
    if config.data.source not in (BUILTIN, *DOWNLOADABLE):
        try:
            describe_source(Path(config.data.source).expanduser())
        except ValueError as error:
            raise UsageError(f"data.source: {str(error).removeprefix('data: ')}") from None
    resolve_device(config.device)
    _check_out_dir(args.out, "--out")
    try:
        final = run_trial(config, args.out, progress=not args.quiet)
    except TrialFailed as error:
        print(f"study: trial failed: {error.reason}", file=sys.stderr)
        return 1
    if "val_acc" in final:
        print(
            f"validation: val_acc {final['val_acc']:.4f}  "
            f"val_consistency {final['val_consistency']:.4f}  "
            f"({config.eval.val_method}, last epoch)"
        )
    print(
        f"test: test_acc {final['test_acc']:.4f}  test_consistency {final['test_consistency']:.4f}"
        f"  ({final['eval_images']} images x {final['eval_shifts']} shifts, "
        f"{final['eval_method']})"
    )
    for family in config.eval.families:
        scores = "  ".join(
            f"{score} {final[f'test_{score}_{family}']:.4f}"
            for score in ("consistency", "acc_worst", "acc_mean")
        )
        print(f"  {family:<9} {scores}")
    print(f"wrote {args.out / 'metrics.json'}, checkpoint and figures in {args.out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from study.service.space import SearchSpace

    overrides = list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"study.tracking_uri={args.tracking_uri}")
    space = SearchSpace.load(args.space, overrides, args.name)  # ConfigError: exit 2
    from study.service.plan import plan

    study_plan = plan(space, args.space, args.address, dry_run=args.dry_run)
    for warning in space.warnings(study_plan.trials):
        print(f"study: warning: {warning}", file=sys.stderr)
    if args.warm_from:
        from study.service.warmstart import check_warm_start

        check_warm_start(args.warm_from, space, study_plan)
    if args.dry_run:
        print("\n".join(_describe_plan(space, study_plan, args.address, args.warm_from)))
        return 0
    return _run_study(space, study_plan, args, resume=False, warm_from=args.warm_from)


def _describe_plan(space, study_plan, address: str | None, warm_from: str | None) -> list[str]:
    """``study run --dry-run``: what the study would do, storages with passwords hidden."""

    from study.secrets import redact
    from study.service.plan import ray_address

    settings = space.settings
    size = "every point of the grid" if settings.sampler == "grid" else "planned"
    objectives = ", ".join(f"{m} ({d})" for m, d in settings.objectives.items())
    scheduler = settings.scheduler.describe() if settings.scheduler else "none (full budgets)"
    lines = [
        f"study {study_plan.name} (dry run: nothing started)",
        f"  trials:      {study_plan.trials} ({size}), {settings.sampler} sampler, "
        f"seed {settings.seed}, at most {settings.concurrent} at once",
        f"  objectives:  {objectives}",
        f"  stopping:    {scheduler}",
        f"  per trial:   {settings.cpus:g} CPU, {settings.gpus:g} GPU, {settings.retries} retries",
        f"  Ray:         {ray_address(address) or 'this machine (a running cluster, else new)'}",
        f"  results:     {study_plan.experiment_path}",
        f"  Optuna:      {redact(study_plan.optuna_storage)}",
        f"  MLflow:      {redact(study_plan.tracking_uri)} (experiment {study_plan.experiment!r})",
        f"  data:        {', '.join(sorted(space.data_sources()))}",
    ]
    if settings.enqueue:
        lines.append(f"  first:       {len(settings.enqueue)} enqueued configurations")
    if warm_from:
        lines.append(f"  warm start:  the complete trials of {warm_from}")
    lines += [f"  warning:     {warning}" for warning in space.warnings(study_plan.trials)]
    return lines


def _resume(args: argparse.Namespace) -> int:
    import tempfile

    import yaml

    from study.mlflow_layout import connect, tracking_uri
    from study.service.plan import plan
    from study.service.space import SearchSpace
    from study.service.tracking import study_document

    uri = tracking_uri(args.tracking_uri)
    connect(uri)  # reachable, and an existing store: one-line error otherwise
    document = study_document(uri, args.name)  # ValueError naming the study: exit 2
    document["study"]["tracking_uri"] = uri
    space = SearchSpace.parse(document)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "study.yaml"
        copy.write_text(yaml.safe_dump(document, sort_keys=False))
        study_plan = plan(space, copy, args.address, args.optuna_storage)
        return _run_study(space, study_plan, args, resume=True)


def _run_study(
    space, study_plan, args: argparse.Namespace, resume: bool, warm_from: str | None = None
) -> int:
    from study.service.quiet import quiet_upstream
    from study.service.runner import run_study
    from study.trial.config import ConfigError

    if not args.verbose:  # Ray's, Tune's and Optuna's own output only with --verbose
        quiet_upstream()
    try:
        outcome = run_study(
            space,
            study_plan,
            args.address,
            resume=resume,
            warm_from=warm_from,
            dashboard=args.ray_dashboard,
        )
    except ConfigError:
        raise
    except ValueError as error:  # raised while running: a failure, not a usage error
        raise RuntimeError(str(error)) from error
    from study.browse import experiment_url, is_server
    from study.mlflow_layout import tracking_uri
    from study.secrets import redact

    name = study_plan.name
    print(
        f"study {name}: {outcome.complete} of {outcome.planned} trials complete"
        + (f", {outcome.stopped} stopped early" if outcome.stopped else "")
        + (f", {outcome.failed} failed" if outcome.failed else "")
        + (f", {outcome.unfinished} not finished" if outcome.unfinished else "")
    )
    uri = study_plan.tracking_uri
    if is_server(uri):  # the address that opens the experiment on its runs
        print(f"  MLflow:  {experiment_url(redact(uri), outcome.experiment_id or None)}")
    else:
        print(f"  MLflow:  {redact(uri)}  (experiment {study_plan.experiment!r})")
        elsewhere = "" if uri == tracking_uri(None) else f" --tracking-uri {redact(uri)}"
        print(f"  browse:  study ui {name}{elsewhere}")
    print(f"  results: {study_plan.experiment_path}")
    print(f"  status:  study status {name}")
    print(f"  front:   study pareto {name} --out pareto-{name}")
    if outcome.unfinished:
        print(f"  interrupted: continue with `study resume {name}`")
        return 130
    return 0 if outcome.done else 1


def _list(args: argparse.Namespace) -> int:
    from study.mlflow_layout import tracking_uri
    from study.service.status import print_studies

    print_studies(tracking_uri(args.tracking_uri))
    return 0


def _status(args: argparse.Namespace) -> int:
    from study.mlflow_layout import tracking_uri
    from study.service.status import print_status

    print_status(tracking_uri(args.tracking_uri), args.name)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from study.browse import serve
    from study.mlflow_layout import tracking_uri

    return serve(
        tracking_uri(args.tracking_uri),
        args.name,
        host=args.host,
        port=args.port,
        optuna=args.optuna,
        optuna_port=args.optuna_port,
    )


def _report(args: argparse.Namespace) -> int:
    from study.data import describe_source
    from study.data.sources import DOWNLOADABLE
    from study.metrics import METHODS
    from study.trial.checkpoint import CheckpointError, load_checkpoint
    from study.trial.report import NOISE, ReportConfig, run_report

    if args.method not in METHODS:
        raise UsageError(f"--method: {args.method!r} is not one of {', '.join(METHODS)}")
    if args.split not in ("train", "test"):
        raise UsageError(f"--split: {args.split!r} is not one of train, test")
    if args.images < 0 or (args.data == NOISE and not 2 <= (args.images or 1000) <= 100_000):
        raise UsageError(f"--images: {args.images} must be 0 (all) or a positive count")
    if args.feature_images == 1 or args.feature_images < 0:
        raise UsageError(f"--feature-images: {args.feature_images} must be 0 (skip) or >= 2")
    if args.feature_shifts is not None and not 1 <= args.feature_shifts <= 512:
        raise UsageError(f"--feature-shifts: {args.feature_shifts} is outside 1 to 512")
    device = _device(args.device)
    if args.data not in (NOISE, *DOWNLOADABLE):
        describe_source(Path(args.data).expanduser())  # DataSourceError: one line, exit 2
    _check_out_dir(args.out, "--out")
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    config = ReportConfig(
        args.checkpoint,
        args.out,
        args.data,
        args.split,
        args.images,
        args.method,
        args.feature_images,
        args.feature_shifts,
        not args.no_timing,
        str(device),
        args.seed,
    )
    metrics = run_report(config, loaded)["metrics"]
    print(
        f"{config.checkpoint}: {metrics['images']} images x {metrics['shifts']} shifts "
        f"({metrics['shift_method']}, {metrics['shift_seconds']:.1f} s)"
    )
    for key in ("acc", "acc_shift_random", "consistency", "variation"):
        print(f"  {key:<17} {metrics[key]:.4f}")
    if "timing_overhead" in metrics:
        print(f"  {'forward overhead':<17} {100 * metrics['timing_overhead']:+.1f}% vs delta")
    print(f"wrote {config.out / 'metrics.json'} and figures in {config.out}")
    return 0


def _device(text: str):
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device: {text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: {text} asked for, but this machine has no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: {text!r} is not supported; use cpu, cuda or cuda:N")
    return device


def _models(args: argparse.Namespace) -> int:
    from study import models

    for name in models.available_models():
        model = models.build(name)
        params = sum(p.numel() for p in model.parameters())
        doc = (type(model).__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} {params / 1e6:6.2f} M params  {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
