"""MLflow tracking: one parent run per study, one nested child run per trial.

The child run is opened from inside the trial (on whatever node runs it) through the
tracking URI, and found again by its ``study.trial_id`` tag, so a retried or resumed
trial logs into the same run: no duplicate, no gap.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from study.mlflow_layout import (
    DECISIONS,
    EXPERIMENT_KIND_TAG,
    MODEL_DEVELOPMENT,
    MODEL_TAG,
    PARENT_TAG,
    PRUNED_TAG,
    ROLE_TAG,
    RUNG_FIELDS,
    SOURCE_NAME_TAG,
    SOURCE_TYPE_TAG,
    SPACE_FOLDER,
    STOPPED_TAG,
    STUDY_DOCUMENT,
    STUDY_TAG,
    TRIAL_TAG,
    child_runs,
    connect,
    logged_epochs,
    metric_key,
    parent_run,
    trial_state,
)
from study.secrets import redact, redact_text
from study.settings import environment

T = TypeVar("T")


def check_tracking(uri: str) -> None:
    """Fail early (a one-line ``ValueError`` naming ``study.tracking_uri``) when the
    tracking store a study will write to cannot be reached."""
    connect(uri, create=True, field="study.tracking_uri")


def start_parent(
    uri: str,
    experiment: str,
    study_name: str,
    params: Mapping[str, Any],
    space_file: Path,
    document: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create (or find again, on resume) the study's parent run; returns its id. It
    holds the space file as given and ``study.yaml``, the resolved space that
    ``study resume`` reads back; ``tags`` are added to its own."""
    from mlflow.entities import Param

    client = PatientClient(uri)  # the study cannot start without its parent run
    found = parent_run(client, study_name)
    source = {SOURCE_NAME_TAG: f"study run {space_file.name}", SOURCE_TYPE_TAG: "LOCAL"}
    if found is not None:  # a resume: a run of an earlier version gets its kind and source
        _tag_model_development(client, found.info.experiment_id)
        for key, value in source.items():
            if key not in found.data.tags:
                client.set_tag(found.info.run_id, key, value)
        return found.info.run_id
    run = client.create_run(
        _experiment(client, experiment),
        run_name=study_name,
        tags={
            STUDY_TAG: study_name,
            ROLE_TAG: "parent",
            **source,
            **_provenance(),
            **(tags or {}),
        },
    )
    batch = [Param(key, "None" if value is None else str(value)) for key, value in params.items()]
    for start in range(0, len(batch), 100):  # MLflow's limit per request
        client.log_batch(run.info.run_id, params=batch[start : start + 100])
    # The space file as written, but with any password in it redacted.
    as_written = redact_text(space_file.read_text())
    client.log_text(run.info.run_id, as_written, f"{SPACE_FOLDER}/{space_file.name}")
    client.log_dict(run.info.run_id, dict(document), STUDY_DOCUMENT)
    return run.info.run_id


def study_document(uri: str, study_name: str) -> dict[str, Any]:
    """The resolved space a study was started with (its parent's ``study.yaml``)."""
    import mlflow
    import yaml

    parent = parent_run(mlflow.MlflowClient(uri), study_name)
    if parent is None:
        raise ValueError(f"name: no study named {study_name!r} at {redact(uri)}")
    with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):  # one small file
        path = mlflow.MlflowClient(uri).download_artifacts(parent.info.run_id, STUDY_DOCUMENT)
    return yaml.safe_load(Path(path).read_text())


def trial_run(uri: str, parent_id: str, trial_id: str, name: str) -> str:
    """The child run of ``trial_id`` under ``parent_id``: found by tag, else created."""
    import mlflow

    return open_child_run(mlflow.MlflowClient(uri), parent_id, trial_id, name)


def open_child_run(
    client, parent_id: str, trial_id: str, name: str, tags: Mapping[str, str] | None = None
) -> str:
    """:func:`trial_run` on ``client``: a run found again is RUNNING again, without the
    tags of how an earlier attempt ended; ``tags`` go on a new run."""
    parent = client.get_run(parent_id)
    experiment_id = parent.info.experiment_id
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1
    )
    if found:  # a retry or a resume: the same run, running again
        run = found[0]
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
        stale = ("study.failure", "study.orphaned", "study.interrupted", PRUNED_TAG, STOPPED_TAG)
        for tag in (*stale, *(_rung_tag(f) for f in RUNG_FIELDS)):
            if tag in run.data.tags:
                client.delete_tag(run.info.run_id, tag)
        return run.info.run_id
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            **(tags or {}),
            PARENT_TAG: parent_id,
            TRIAL_TAG: trial_id,
            STUDY_TAG: parent.data.tags.get(STUDY_TAG, ""),
            ROLE_TAG: "trial",
        },
    )
    return run.info.run_id


def mark_pruned(
    uri: str,
    parent_id: str,
    trial_id: str,
    decision: Mapping[str, Any],
    metrics: list[str],
    row: Mapping[str, Any],
) -> str | None:
    """Close the child run of a trial the scheduler stopped: the rung epoch's metrics
    (``row``: the worker is stopped before it logs them), the decision as tags
    (``study.rung``, ``study.rung_rank``, ...) and metrics (``rung/<metric>``), tags
    ``study.pruned=true`` and ``study.stopped_at_epoch``, status ``KILLED``. Returns the
    run id (None if the trial has no child run)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    run = _child(client, parent_id, trial_id)
    if run is None:
        return None
    run_id = run.info.run_id
    # the rung epoch, unless the run holds it (a retried call, a resume)
    if "epoch" in row and int(row["epoch"]) not in logged_epochs(client, run_id):
        values = {k: v for k, v in row.items() if k != "epoch"}
        log_metrics(client, run_id, values, int(row["epoch"]))
    epoch = int(row.get("epoch", decision["rung"]))
    tags = {_rung_tag(f): str(decision[f]) for f in RUNG_FIELDS if f in decision}
    tags.update({PRUNED_TAG: "true", STOPPED_TAG: str(epoch)})
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for name, value in zip(metrics, decision["values"], strict=True):
        client.log_metric(run_id, f"rung/{name}", float(value), step=int(decision["rung"]))
    client.set_terminated(run_id, "KILLED")
    return run_id


def log_parent_metric(uri: str, parent_id: str, key: str, value: float, step: int = 0) -> None:
    """One metric of the parent run (``trials_stopped``, ...)."""
    import mlflow

    mlflow.MlflowClient(uri).log_metric(parent_id, key, value, step=step)


def log_decisions(uri: str, parent_id: str, document: Mapping[str, Any]) -> None:
    """The scheduler's decision log as the parent's ``scheduler/decisions.json``."""
    import mlflow

    mlflow.MlflowClient(uri).log_dict(parent_id, dict(document), DECISIONS)


def _rung_tag(field: str) -> str:
    return "study.rung" if field == "rung" else f"study.rung_{field}"


def _child(client, parent_id: str, trial_id: str):
    """The child run of ``trial_id`` under ``parent_id``, or None."""
    experiment_id = client.get_run(parent_id).info.experiment_id
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_id}'",
        max_results=1,
    )
    return found[0] if found else None


def mark_failed(uri: str, parent_id: str, trial_id: str, reason: str) -> None:
    """Mark the child run of ``trial_id`` failed (Ray gave up on the trial)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    for run in child_runs(uri, parent_id):
        if run.data.tags.get(TRIAL_TAG) == trial_id and run.info.status != "FINISHED":
            client.set_tag(run.info.run_id, "study.failure", reason[:500])
            client.set_terminated(run.info.run_id, "FAILED")


def close_unfinished(
    uri: str, parent_id: str, known_trials: set[str], unfinished_trials: set[str]
) -> list[str]:
    """After ``Tuner.fit`` returned, close child runs still RUNNING: ``KILLED`` with tag
    ``study.interrupted`` when their trial was stopped (Ctrl-C; ``study resume`` goes
    on with it), ``KILLED`` with tag ``study.orphaned`` when Tune does not know their
    trial at all (a killed driver started it after Tune's last snapshot). A run marked
    pruned whose trial Tune does not know (a killed driver stopped it after Tune's last
    snapshot, and the study ran that configuration again) loses its pruned tags and is
    tagged ``study.orphaned`` too, so no reader counts it. Returns the run ids closed."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    closed = []
    for run in child_runs(uri, parent_id):
        trial_id = run.data.tags.get(TRIAL_TAG)
        if trial_state(run) == "PRUNED" and trial_id not in known_trials:
            for tag in (PRUNED_TAG, STOPPED_TAG, *(_rung_tag(f) for f in RUNG_FIELDS)):
                if tag in run.data.tags:
                    client.delete_tag(run.info.run_id, tag)
            client.set_tag(run.info.run_id, "study.orphaned", "true")
            if run.info.status == "RUNNING":  # the driver died before its worker ended it
                client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
            continue
        if run.info.status != "RUNNING":
            continue
        if trial_id in known_trials and trial_id not in unfinished_trials:
            continue  # ended in Tune; its own logger or the failure callback closes it
        tag = "study.interrupted" if trial_id in unfinished_trials else "study.orphaned"
        client.set_tag(run.info.run_id, tag, "true")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


def check_experiment(uri: str, name: str) -> None:
    """A one-line error when the study's MLflow experiment exists but was deleted."""
    experiment = connect(uri, create=True).get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"study.experiment: MLflow experiment {name!r} is deleted; restore it "
            f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or "
            "set study.experiment to another name"
        )


def set_parent_status(uri: str, parent_id: str, status: str, counts: Mapping[str, int]) -> None:
    """Record how the study ended (or that it runs again): status and trial counts."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    for key, value in counts.items():
        client.log_metric(parent_id, f"trials_{key}", value)
    if status == "RUNNING":
        client.update_run(parent_id, status="RUNNING")
    else:
        client.set_terminated(parent_id, status)


def log_metrics(
    client, run_id: str, values: Mapping[str, Any], step: int = 0, final: bool = False
) -> None:
    """Numeric ``values`` (a trial's metrics by name) as metrics at ``step`` under their
    MLflow keys (:func:`study.mlflow_layout.metric_key`; ``final``: final metrics, with
    the run's facts as tags ``study.<name>``), in batches of MLflow's limit."""
    import time

    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics, tags = [], []
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        key = metric_key(name, final)
        if key is None:
            tags.append(RunTag(f"study.{name}", str(value)))
        else:
            metrics.append(Metric(key, float(value), now, step))
    for start in range(0, max(len(metrics), len(tags)), 1000):
        client.log_batch(
            run_id, metrics=metrics[start : start + 1000], tags=tags[start : start + 1000]
        )


def model_requirements() -> list[str]:
    """The pip requirements of a logged model: stated, since inferring them takes
    seconds."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name).split('+')[0]}"
        for name in ("torch", "torchvision", "antialiased-study")
    ]


def log_model(client, run_id: str, model, example, signature) -> None:
    """``model`` as the MLflow model ``model`` of run ``run_id`` (tag
    :data:`MODEL_TAG`)."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(client.tracking_uri)
    # MLflow 3 files a logged model under the active experiment: the run's, so that
    # runs:/RUN/model finds it and the UI shows it beside the run.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    logged = mlflow.pytorch.log_model(
        model,
        name="model",
        run_id=run_id,
        signature=signature,
        input_example=example,
        pip_requirements=model_requirements(),
        serialization_format="pickle",  # the module as trained, no torch.export
    )
    client.set_tag(run_id, MODEL_TAG, logged.model_uri)


def request_settings() -> dict[str, str]:
    """MLflow's HTTP settings while a study runs, where the user set none: a request to
    a server that is away fails at once instead of after MLflow's own retries with
    backoff (minutes); the outboxes and :func:`patiently` do the waiting, and say so
    once."""
    import os

    defaults = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    return {name: os.environ.get(name, value) for name, value in defaults.items()}


def quiet_urllib3() -> None:
    """No urllib3 warning per failed request while the tracking server is away: the
    outbox, the relay or :func:`patiently` says it once."""
    import logging

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def patiently(uri: str, what: str, action: Callable[[], T], patience: float | None = None) -> T:
    """``action()``, its MLflow requests retried while the server at ``uri`` is away
    (:func:`tracking_unreachable`) for up to ``patience`` seconds
    (``$STUDY_TRACKING_PATIENCE_S``), with one line when the waiting starts and one when
    the server is back; past the patience a one-line :class:`TrackingTimeout` naming the
    server. For the driver's own steps that the study cannot go on without (its parent
    run); what can wait goes through an outbox instead."""
    import time

    from study.mlflow_layout import error_gist
    from study.settings import seconds_setting

    patience = seconds_setting("STUDY_TRACKING_PATIENCE_S") if patience is None else patience
    quiet_urllib3()
    away_since: float | None = None
    while True:
        try:
            with environment(**request_settings()):
                result = action()
        except Exception as error:
            if not tracking_unreachable(error):
                raise
            now = time.monotonic()
            if away_since is None:
                away_since = now
                print(
                    f"study: MLflow at {redact(uri)} unreachable ({error_gist(error)}): "
                    f"waiting up to {patience:.0f} s (STUDY_TRACKING_PATIENCE_S) to {what}",
                    flush=True,
                )
            if now - away_since >= patience:
                raise TrackingTimeout(
                    f"MLflow at {redact(uri)} unreachable for {now - away_since:.0f} s "
                    f"(patience {patience:.0f} s, STUDY_TRACKING_PATIENCE_S): could not {what}"
                ) from None
            time.sleep(min(2.0, max(0.1, patience - (now - away_since))))
            continue
        if away_since is not None:
            print(
                f"study: MLflow at {redact(uri)} reachable again after "
                f"{time.monotonic() - away_since:.0f} s: {what} done",
                flush=True,
            )
        return result


class PatientClient:
    """An ``MlflowClient`` on ``uri`` whose every request waits out an unreachable
    server (:func:`patiently`, per request: a retried step repeats no request that
    succeeded)."""

    def __init__(self, uri: str, patience: float | None = None) -> None:
        import mlflow

        self._client = mlflow.MlflowClient(uri)
        self._patience = patience
        self.tracking_uri = uri

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return patiently(
                self.tracking_uri,
                f"{name.replace('_', ' ')}",
                lambda: method(*args, **kwargs),
                self._patience,
            )

        return call


class TrackingTimeout(ConnectionError):
    """MLflow stayed unreachable for longer than the patience: one line naming it."""


def tracking_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the tracking server is away (no connection, a timeout, a
    5xx answer such as a database failover gives), not that it refused a request."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, ConnectionError | TimeoutError):
        return True
    try:
        import requests

        if isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
    except ImportError:
        pass
    return isinstance(error, MlflowException) and error.get_http_status_code() >= 500


def _experiment(client, name: str) -> str:
    """The id of experiment ``name``, created if need be, tagged as model development
    (so that MLflow's UI opens it on its runs)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT})
    _tag_model_development(client, experiment.experiment_id, experiment.tags)
    return experiment.experiment_id


def _tag_model_development(client, experiment_id: str, tags: Mapping[str, str] | None = None):
    """Tag an experiment as model development unless its kind is set (a user's own)."""
    if tags is None:
        tags = client.get_experiment(experiment_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)


def _provenance() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    tags = {"study.python": platform.python_version()}
    for package in ("torch", "ray", "optuna", "mlflow", "scipy", "antialiased-study"):
        try:
            tags[f"study.version.{package}"] = version(package)
        except PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
