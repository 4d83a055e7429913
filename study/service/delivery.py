"""How each kind of outbox record reaches MLflow: one function per kind (:data:`DELIVER`),
taking the client, the outbox's state (the run id, the epochs the run holds) and the
record's payload. Each is idempotent against what the run already holds, so a spool
delivered twice writes everything once."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from study import mlflow_layout
from study.mlflow_layout import log_dataset, logged_epochs, metric_key
from study.service import tracking

#: The driver's writes a relay may defer (functions of study.service.tracking taking the
#: tracking URI first), by name: a record holds the name and its arguments.
RELAYED_CALLS = (
    "mark_pruned",
    "mark_failed",
    "log_decisions",
    "log_parent_metric",
    "close_unfinished",
    "set_parent_status",
)


def _run(client, state: dict[str, Any], payload: Mapping[str, Any]) -> None:
    """The trial's child run: found by its trial id (a retry, a resume, a spool written
    after a first attempt created it), else created; the epochs it holds are learned."""
    run_id = tracking.open_child_run(
        client, payload["parent"], payload["trial_id"], payload["name"], payload.get("tags")
    )
    state["run_id"] = run_id
    state["logged"] = logged_epochs(client, run_id) | set(state.get("logged", ()))


def _attach(client, state: dict[str, Any], payload: Mapping[str, Any]) -> None:
    """An existing run, given by id; the epochs it holds are learned."""
    logged = logged_epochs(client, payload["run_id"])  # first: it may find no server
    state["run_id"] = payload["run_id"]
    state["logged"] = logged | set(state.get("logged", ()))


def _params(client, state, payload) -> None:
    from mlflow.entities import Param

    logged = client.get_run(state["run_id"]).data.params
    new = [Param(k, v) for k, v in payload["params"].items() if k not in logged]
    for start in range(0, len(new), 100):
        client.log_batch(state["run_id"], params=new[start : start + 100])


def _dataset(client, state, payload) -> None:
    log_dataset(client, state["run_id"], payload["name"], payload["digest"], payload["source"])


def _tags(client, state, payload) -> None:
    from mlflow.entities import RunTag

    tags = [RunTag(k, str(v)) for k, v in payload["tags"].items()]
    client.log_batch(state["run_id"], tags=tags)


def _epoch(client, state, payload) -> None:
    """One epoch's metrics (step = epoch), unless the run holds that epoch already."""
    row = payload["row"]
    epoch = int(row["epoch"])
    logged = state.setdefault("logged", set())
    if epoch in logged:
        return
    values = {k: v for k, v in row.items() if k != "epoch"}
    tracking.log_metrics(client, state["run_id"], values, epoch)
    logged.add(epoch)


def _final(client, state, payload) -> None:
    """The final metrics (``test/acc``, ..., :func:`study.mlflow_layout.metric_key`),
    those the run does not hold yet: a spool delivered in part before an outage, then
    again whole, or an attempt that re-runs a finished trial's evaluation, writes each
    value once (the last epoch's ``val/*`` and ``train/loss`` are held already)."""
    held = client.get_run(state["run_id"]).data.metrics
    missing = {
        name: value
        for name, value in payload["metrics"].items()
        if metric_key(name, final=True) not in held
    }
    tracking.log_metrics(client, state["run_id"], missing, final=True)


def _file(client, state, payload) -> None:
    path = Path(payload["path"])
    if path.is_file():
        client.log_artifact(state["run_id"], str(path), payload.get("artifact_path"))


def _folder(client, state, payload) -> None:
    path = Path(payload["path"])
    if path.is_dir():
        client.log_artifacts(state["run_id"], str(path), payload.get("artifact_path"))


def _filter(client, state, payload) -> None:
    from study import filters
    from study.filters.plot import plot_responses

    spec = payload["spec"]
    client.log_dict(state["run_id"], filters.describe(spec), mlflow_layout.FILTER_DOCUMENT)
    client.log_figure(state["run_id"], plot_responses([spec]), mlflow_layout.FILTER_FIGURE)


def _model(client, state, payload) -> None:
    """A model saved with ``mlflow.pytorch.save_model`` (while the server was away),
    logged as the trial's MLflow model."""
    import mlflow.pytorch
    from mlflow.models import Model

    path = payload["path"]
    if mlflow_layout.MODEL_TAG in client.get_run(state["run_id"]).data.tags:
        return  # logged by an earlier delivery of the same spool
    saved = Model.load(path)
    model = mlflow.pytorch.load_model(path)
    example = saved.load_input_example(path)
    tracking.log_model(client, state["run_id"], model, example, saved.signature)
    shutil.rmtree(path, ignore_errors=True)


def _call(client, state, payload) -> None:
    """A driver write deferred by :class:`study.service.relay.Relay`: a function of
    :mod:`study.service.tracking` named in :data:`RELAYED_CALLS`, on this client's URI."""
    if payload["name"] not in RELAYED_CALLS:
        raise ValueError(f"record: {payload['name']!r} is not a relayed call")
    getattr(tracking, payload["name"])(client.tracking_uri, **payload["kwargs"])


def _end(client, state, payload) -> None:
    client.set_terminated(state["run_id"], payload.get("status", "FINISHED"))


DELIVER: dict[str, Callable[[Any, dict[str, Any], Mapping[str, Any]], None]] = {
    "run": _run,
    "attach": _attach,
    "params": _params,
    "dataset": _dataset,
    "tags": _tags,
    "epoch": _epoch,
    "final": _final,
    "file": _file,
    "folder": _folder,
    "filter": _filter,
    "model": _model,
    "end": _end,
    "call": _call,
}
