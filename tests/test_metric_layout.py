"""How a trial's metrics are named in MLflow (``study.mlflow_layout.metric_key``) and read
back (``final_metrics``, ``logged_epochs``), in this layout and the one before it; a
trial logged through the service's writer lands in the UI's sections and reads back
whole."""

from __future__ import annotations

import mlflow
import pytest

from study.metrics.names import FINAL_METRICS, PER_EPOCH
from study.mlflow_layout import (
    RUN_FACTS,
    final_metrics,
    logged_epochs,
    metric_key,
)
from study.service import tracking

#: What a trial's per-epoch row and final metrics hold besides the named metric sets.
EPOCH_EXTRAS = ("lr", "epoch_seconds", "validation_seconds", "images_per_second")
FINAL_EXTRAS = ("setup_seconds", "eval_seconds_crop", "seconds_this_run", "flops")


def test_every_metric_has_a_section_and_no_two_share_a_key():
    epoch_keys = {name: metric_key(name) for name in (*PER_EPOCH, *EPOCH_EXTRAS)}
    final_keys = {name: metric_key(name, final=True) for name in (*FINAL_METRICS, *FINAL_EXTRAS)}
    assert all("/" in key for key in (*epoch_keys.values(), *final_keys.values()))
    assert len(set(epoch_keys.values())) == len(epoch_keys)
    assert len(set(final_keys.values())) == len(final_keys)
    # a final value shares its key with a per-epoch one only where they are the same
    # number (the last epoch's validation scores and training loss)
    shared = {n for n, key in final_keys.items() if key in epoch_keys.values()}
    assert shared == {*(n for n in PER_EPOCH if n.startswith("val_")), "train_loss"}
    assert {metric_key(name, final=True) for name in RUN_FACTS} == {None}


@pytest.mark.parametrize("layout", ["current", "previous"])
def test_final_metrics_read_back_by_name_in_either_layout(layout):
    final = {name: 0.5 for name in (*FINAL_METRICS, *FINAL_EXTRAS)}
    epoch = {name: 0.25 for name in EPOCH_EXTRAS}
    if layout == "current":
        stored = {metric_key(n, final=True): v for n, v in final.items()}
        stored |= {metric_key(n): v for n, v in epoch.items()}
    else:
        stored = {f"final.{n}": v for n, v in final.items()} | epoch
    assert final_metrics(stored) == final


def test_the_writer_groups_and_the_reader_finds_the_epochs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("layout")).info.run_id
    for epoch in (1, 2):
        row = {"train_loss": 1.0 / epoch, "val_acc": 0.3 * epoch, "lr": 0.1, "epoch_seconds": 2.0}
        tracking.log_metrics(client, run, row, epoch)
    tracking.log_metrics(
        client, run, {"test_acc": 0.9, "train_seconds": 4.0, "epochs": 2, "threads": 1}, final=True
    )
    client.log_metric(run, "train_loss", 1.5, step=3)  # an epoch in the previous layout
    stored = client.get_run(run).data
    assert set(stored.metrics) == {
        "train/loss",
        "train/lr",
        "val/acc",
        "time/epoch_seconds",
        "test/acc",
        "time/total_train_seconds",
        "train_loss",
    }
    assert (stored.tags["study.epochs"], stored.tags["study.threads"]) == ("2", "1")
    assert final_metrics(stored.metrics) == {
        "train_loss": 0.5,
        "val_acc": 0.6,
        "test_acc": 0.9,
        "train_seconds": 4.0,
    }
    assert logged_epochs(client, run) == {1, 2, 3}
