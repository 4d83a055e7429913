"""A study's plan: everything resolved and checked before anything starts.

:func:`plan` turns a validated :class:`~study.service.space.SearchSpace` into a
:class:`StudyPlan`: where Ray Tune keeps results, which Optuna storage and MLflow
tracking URI the study uses, its objectives and its size. It checks that a trial fits
the machine (or cluster) and that the tracking store answers; every problem is a
one-line error naming the field, and nothing has been started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from study.mlflow_layout import tracking_uri
from study.paths import absolute_sqlite, default_root
from study.secrets import reveal
from study.service.space import SearchSpace
from study.service.tracking import check_experiment, check_tracking
from study.settings import (
    DURATION_SETTINGS,
    FLAG_SETTINGS,
    flag_setting,
    is_seconds,
    seconds_setting,
)
from study.trial.config import ConfigError

STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "file")


@dataclass(frozen=True)
class StudyPlan:
    """Everything resolved before anything starts."""

    name: str
    space_file: Path
    storage_path: str
    optuna_storage: str
    tracking_uri: str
    experiment: str
    metrics: list[str]
    modes: list[str]
    trials: int

    @property
    def experiment_path(self) -> str:
        """Where Ray Tune keeps this study's results (a folder or a storage URI)."""
        return f"{self.storage_path.rstrip('/')}/{self.name}"


#: Tune's setting for how often it snapshots the experiment: seconds, or ``auto``.
SNAPSHOT_PERIOD = "TUNE_GLOBAL_CHECKPOINT_S"


def snapshot_period(trials: int) -> str:
    """How often Tune snapshots the experiment (``TUNE_GLOBAL_CHECKPOINT_S``): what the
    user set, else 0.05 s per planned trial, between 10 s and 300 s.

    A snapshot writes every trial's state: it costs O(n). Tune's own rule (``auto``)
    snapshots every 10 s until one takes 0.5 s and then spends 5 % of the time on them,
    so the driver's cost per trial grew with the study (docs/SCALE.md). A period in
    proportion to the planned size keeps the snapshots' share of the driver's time the
    same at any size. What a longer period costs: a driver killed between two snapshots
    resumes Tune's bookkeeping from up to that long before, and Optuna hears of a trial
    stopped at a rung at the next snapshot (:mod:`study.service.searcher`).

    >>> [snapshot_period(n) for n in (10, 1000, 100_000)]  # with the variable unset
    ['10', '50', '300']
    """
    raw = os.environ.get(SNAPSHOT_PERIOD)
    if raw is None:
        return f"{min(300.0, max(10.0, 0.05 * trials)):g}"
    if raw != "auto" and not is_seconds(raw):
        raise ValueError(f"{SNAPSHOT_PERIOD}: {raw!r} is not 'auto' or a number of seconds >= 0")
    return raw


def ray_address(address: str | None) -> str | None:
    """The Ray address a study connects to: ``--address``, else ``$RAY_ADDRESS``, else
    None (Ray's own default: a ``ray start`` cluster running on this machine, else a new
    local instance). ``local`` always means a new local instance, as in ``ray.init``."""
    return address or os.environ.get("RAY_ADDRESS") or None


def runs_locally(address: str | None) -> bool:
    """Whether the study's trials run on this machine only (no cluster address)."""
    return ray_address(address) in (None, "local")


def plan(
    space: SearchSpace,
    space_file: Path,
    address: str | None = None,
    optuna_storage: str | None = None,
    dry_run: bool = False,
) -> StudyPlan:
    """Resolve storage locations, tracking URI and objectives; check that a local Ray
    instance could hold a trial (when no cluster ``address`` or ``RAY_ADDRESS`` is
    given) and that the tracking store answers. One-line errors, nothing started.

    ``optuna_storage`` (``study resume --optuna-storage``) is the storage URL whole, for
    a study recorded with its password redacted (:mod:`study.secrets`).
    ``dry_run``: write nothing, not even a new SQLite tracking database."""
    settings = space.settings
    for name in DURATION_SETTINGS:  # read later, on the driver and the workers
        seconds_setting(name)
    for name in FLAG_SETTINGS:
        flag_setting(name)
    snapshot_period(settings.trials)
    if runs_locally(address):
        check_local_resources(settings.cpus, settings.gpus)
        check_local_data(space)
    storage_path = settings.storage_path or os.environ.get("STUDY_STORAGE_PATH") or "ray_results"
    if "://" not in storage_path:
        storage_path = str((default_root() / Path(storage_path).expanduser()).resolve())
    elif storage_path.split("://")[0] not in STORAGE_SCHEMES:
        raise ConfigError(
            "study.storage_path",
            f"{storage_path}: use a folder or a URI with scheme {', '.join(STORAGE_SCHEMES)}",
        )
    optuna_url = settings.optuna_storage or optuna_storage or os.environ.get("STUDY_OPTUNA_STORAGE")
    if optuna_url:  # a password recorded as *** comes back from the flag or environment
        optuna_url = reveal(optuna_url, "study.optuna_storage", given=[optuna_storage])
    if optuna_url and "://" not in optuna_url:  # a journal file
        optuna_url = str((default_root() / Path(optuna_url).expanduser()).resolve())
    elif optuna_url:
        optuna_url = absolute_sqlite(optuna_url)
    if "://" in storage_path and not optuna_url:
        raise ConfigError(
            "study.optuna_storage",
            f"storage_path {storage_path} is remote: give an RDB URL (postgresql://...) "
            "or a journal file path that every run of this study can reach",
        )
    optuna_storage = optuna_url or str(Path(storage_path) / settings.name / "optuna.journal")
    uri = tracking_uri(settings.tracking_uri)
    experiment = settings.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or settings.name
    if not (dry_run and _new_sqlite(uri)):
        check_tracking(uri)
        check_experiment(uri, experiment)
    trials = space.grid_size() if settings.sampler == "grid" else settings.trials
    return StudyPlan(
        name=settings.name,
        space_file=space_file.resolve(),
        storage_path=storage_path,
        optuna_storage=optuna_storage,
        tracking_uri=uri,
        experiment=experiment,
        metrics=list(settings.objectives),
        modes=list(settings.objectives.values()),
        trials=trials,
    )


def check_local_resources(cpus: float, gpus: float) -> None:
    """Like :func:`check_resources`, for the local Ray instance about to be started:
    this machine's CPU count and CUDA GPUs."""
    have_cpus = os.cpu_count() or 1
    have_gpus = 0
    if gpus:
        import torch

        have_gpus = torch.cuda.device_count()
    if gpus > have_gpus:
        raise ConfigError(
            "study.gpus", f"a trial asks for {gpus:g} GPU but this machine has {have_gpus}"
        )
    if cpus > have_cpus:
        raise ConfigError(
            "study.cpus", f"a trial asks for {cpus:g} CPU but this machine has {have_cpus}"
        )


def _new_sqlite(uri: str) -> bool:
    """Whether ``uri`` names a SQLite database that does not exist yet."""
    prefix = "sqlite:///"
    return uri.startswith(prefix) and not Path(uri[len(prefix) :].split("?")[0]).exists()


def check_local_data(space: SearchSpace) -> None:
    """Every dataset path the space names exists here and is a dataset (trials on a
    local Ray instance read it from this machine; a cluster's nodes may have their own
    copy, so this is checked only without one)."""
    from study.data.names import NAMED_SOURCES
    from study.data.sources import describe_source

    for source in sorted(space.data_sources()):
        if source in NAMED_SOURCES:
            continue
        try:
            describe_source(Path(source).expanduser())
        except ValueError as error:
            raise ConfigError("data.source", str(error).removeprefix("data: ")) from None


def check_resources(cpus: float, gpus: float) -> None:
    """Fail with a one-line error when no node of the connected Ray cluster could ever
    hold one trial (Tune would otherwise wait for it forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return
    have = ", ".join(f"{n.get('CPU', 0):g} CPU + {n.get('GPU', 0):g} GPU" for n in nodes)
    field = (
        "study.gpus" if gpus and not any(n.get("GPU", 0) >= gpus for n in nodes) else "study.cpus"
    )
    raise ConfigError(
        field,
        f"a trial asks for {cpus:g} CPU + {gpus:g} GPU but no node of the cluster has that "
        f"(nodes: {have or 'none'})",
    )
