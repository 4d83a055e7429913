"""What every finished study must hold, checked in one place: by the regular suite on a
local smoke study (``tests/test_service.py``) on every CI run, and by the opt-in
compose test (``tests/test_compose.py``) on the stack. A rename of a metric, tag or
artifact then fails CI, not the next person who runs the stack.

Every name comes from the project's own constants, none is spelled here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mlflow
import optuna

from study.metrics.names import FRACTIONS, TEST_METRICS
from study.mlflow_layout import (
    FILTER_DOCUMENT,
    FILTER_FIGURE,
    FRONT_NOTE_BEGIN,
    FRONT_NOTE_END,
    MODEL_TAG,
    NOTE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    SOURCE_NAME_TAG,
    SPACE_FOLDER,
    STUDY_DOCUMENT,
    TRIAL_TAG,
    metric_key,
)
from study.service.searcher import MLFLOW_RUN_ID
from study.trial.checkpoint import HISTORY_FILE, METRICS_FILE

#: Metrics that are shares of images, so in [0, 1] (``test_variation`` is a total
#: variation distance, also in [0, 1]).
SHARES = (*FRACTIONS, *TEST_METRICS)
#: Logged once per epoch, at steps 1..epochs.
PER_EPOCH = ("train/loss", "train/lr", "val/acc", "val/consistency", "val/loss")


def study_runs(uri: str, name: str):
    """(parent run, child runs) of study ``name``, straight from MLflow."""
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(ROLE_TAG) == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parents[0].info.run_id]
    return parents[0], children


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    """Every file of a run's artifacts, by path."""
    found = set()
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            found |= artifact_paths(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def check_finished_study(
    uri: str,
    name: str,
    *,
    trials: int,
    space: str,
    optuna_storage: Any = None,
    epochs: int = 2,
    model: bool = False,
    status_output: str | None = None,
) -> tuple[Any, list]:
    """Assert that study ``name`` finished whole; returns (parent run, child runs).

    In MLflow at ``uri``: the parent FINISHED with its space, resolved document and
    front, counting ``trials`` complete; one FINISHED child per trial, its final
    metrics present and in range, each per-epoch metric at steps ``1..epochs``, its
    filter, metrics, history and figures, and (``model``) an MLflow model that its tag
    names. In Optuna (``optuna_storage``: a URL or a storage object): ``trials``
    trials COMPLETE, each naming its child run (unchecked without it).
    ``status_output``: what `study status` printed, which must agree."""
    client = mlflow.MlflowClient(uri)
    parent, children = study_runs(uri, name)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_complete"] == trials
    assert parent.data.metrics["front_size"] >= 1
    assert parent.data.metrics["hypervolume"] > 0
    parent_files = artifact_paths(client, parent.info.run_id)
    assert {STUDY_DOCUMENT, f"{SPACE_FOLDER}/{Path(space).name}", "pareto/pareto.csv"} <= (
        parent_files
    ), parent_files
    assert len(children) == trials, [c.info.status for c in children]
    # The runs table's Source and Dataset columns, and the description linking the front
    note = parent.data.tags[NOTE_TAG]
    assert note.count(FRONT_NOTE_BEGIN) == 1 and note.count(FRONT_NOTE_END) == 1, note
    linked = set(re.findall(rf"#/experiments/{parent.info.experiment_id}/runs/(\w+)\)", note))
    assert 1 <= len(linked) == int(parent.data.metrics["front_size"]), note
    assert linked <= {child.info.run_id for child in children}, note
    assert parent.data.tags[SOURCE_NAME_TAG] == f"study run {Path(space).name}"
    parent_data = {d.dataset.digest for d in parent.inputs.dataset_inputs}
    child_data = {d.dataset.digest for c in children for d in c.inputs.dataset_inputs}
    assert parent_data and parent_data == child_data, (parent_data, child_data)
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("study.failure")
        metrics = child.data.metrics
        # every metric in a chart section of the UI; facts about the run as tags
        assert all("/" in key for key in metrics), sorted(metrics)
        assert child.data.tags["study.epochs"] == str(epochs), child.data.tags
        assert int(child.data.tags["study.eval_images"]) > 0
        for metric in SHARES:
            value = metrics.get(metric_key(metric, final=True))
            assert value is not None and 0 <= value <= 1, (metric, value)
        assert metrics["val/loss"] > 0  # a cross-entropy, nats
        assert metrics["time/total_train_seconds"] > 0
        assert len(client.get_metric_history(child.info.run_id, "test/acc")) == 1
        for per_epoch in PER_EPOCH:
            history = client.get_metric_history(child.info.run_id, per_epoch)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), per_epoch
        assert TRIAL_TAG in child.data.tags
        files = artifact_paths(client, child.info.run_id)
        assert {FILTER_DOCUMENT, FILTER_FIGURE, METRICS_FILE, HISTORY_FILE} <= files, files
        assert any(f.startswith("figures/") and f != FILTER_FIGURE for f in files), files
        if model:
            assert child.data.tags[MODEL_TAG].startswith("models:/"), child.data.tags[MODEL_TAG]
    if status_output is not None:
        assert f"{trials} of {trials} trials complete" in status_output, status_output
    if optuna_storage is None:
        return parent, children
    stored = optuna.load_study(study_name=name, storage=optuna_storage).trials
    assert [t.state.name for t in stored] == ["COMPLETE"] * trials
    assert {t.user_attrs.get(MLFLOW_RUN_ID) for t in stored} == {c.info.run_id for c in children}
    return parent, children
