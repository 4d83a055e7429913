"""``study run``, ``resume``, ``list``, ``status`` and ``ui``: studies on a Ray
cluster, tracked in MLflow (the service, :mod:`study.service`, does the work)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from study.cli.common import address_flag, set_flag, tracking_flag


def configure_run(run: argparse.ArgumentParser) -> None:
    run.add_argument("space", type=Path, metavar="SPACE", help="search-space YAML file")
    set_flag(run, "study.trials=20", "space")
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
    tracking_flag(run)
    address_flag(run)


def configure_resume(resume: argparse.ArgumentParser) -> None:
    resume.add_argument("name", metavar="NAME", help="the study's name")
    tracking_flag(resume)
    address_flag(resume)
    resume.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="the Optuna storage URL with its password, for a study recorded with it "
        "redacted (default: $STUDY_OPTUNA_STORAGE; better: PGPASSWORD or ~/.pgpass)",
    )


def configure_list(listing: argparse.ArgumentParser) -> None:
    tracking_flag(listing)


def configure_status(status: argparse.ArgumentParser) -> None:
    status.add_argument("name", metavar="NAME", help="the study's name")
    tracking_flag(status)


def configure_ui(browse: argparse.ArgumentParser) -> None:
    browse.add_argument(
        "name", metavar="NAME", nargs="?", help="the study to open (default: the list)"
    )
    tracking_flag(browse)
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


def run(args: argparse.Namespace) -> int:
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
        print("\n".join(describe_plan(space, study_plan, args.address, args.warm_from)))
        return 0
    return _run_study(space, study_plan, args, resume=False, warm_from=args.warm_from)


def describe_plan(space, study_plan, address: str | None, warm_from: str | None) -> list[str]:
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


def resume(args: argparse.Namespace) -> int:
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
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's old reporter: silent at verbose=0
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


def list_studies(args: argparse.Namespace) -> int:
    from study.mlflow_layout import tracking_uri
    from study.service.status import print_studies

    print_studies(tracking_uri(args.tracking_uri))
    return 0


def status(args: argparse.Namespace) -> int:
    from study.mlflow_layout import tracking_uri
    from study.service.status import print_status

    print_status(tracking_uri(args.tracking_uri), args.name)
    return 0


def ui(args: argparse.Namespace) -> int:
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
