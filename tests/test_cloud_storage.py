"""A study whose results and checkpoints live in object storage (S3, through pyarrow,
as Ray Tune stores them), on a real S3 API server (moto's ``moto_server`` process): the
trials' checkpoints, and the MLflow records a trial could not send during an outage,
travel through the bucket; the driver delivers those records from there once the
tracking server is back, and marks each spool delivered in the bucket."""

from __future__ import annotations

import time

import mlflow
import pytest
from runs import (
    TINY,
    assert_study_survived,
    driver_output,
    environment,
    runs_with_an_epoch,
    start_driver,
    stop_driver,
    wait_until,
)
from servers import (
    free_port,
    mlflow_server,
    postgres_database,
    psycopg_url,
    s3_client,
    s3_reason,
    s3_server,
)

REASON = s3_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no S3 server: {REASON}")


def test_records_held_in_s3_checkpoints_reach_mlflow_after_an_outage(tmp_path):
    """MLflow stops once both trials have an epoch in, and comes back only after the
    driver has said both are done: their last epochs and final metrics waited in the
    spools of their checkpoints, in the bucket. Both trials complete, every epoch is in
    MLflow once, and each spool in the bucket is marked delivered."""

    epochs = 4
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    with (
        s3_server(tmp_path, "studies") as s3,
        postgres_database("study_cloud_optuna") as optuna_url,
    ):
        args = [
            *TINY,
            "--set",
            f"train.epochs={epochs}",
            "--set",
            "study.storage_path=s3://studies/results",
            "--name",
            "cloud",
        ]
        driver = None
        try:
            with mlflow_server(store, tmp_path, port=port) as url:
                env = {
                    **environment(url),
                    **s3,
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                    "STUDY_OPTUNA_STORAGE": psycopg_url(optuna_url),
                }
                driver = start_driver(args, tmp_path, env)
                client = mlflow.MlflowClient(url)
                wait_until(lambda: runs_with_an_epoch(client, "cloud") >= 2, 600,
                           "an epoch of both trials in MLflow", driver, tmp_path)  # fmt: skip
            away = time.monotonic()
            wait_until(lambda: driver_output(tmp_path).count(" done: ") >= 2, 600,
                       "both trials done while MLflow is away", driver, tmp_path)  # fmt: skip
            with mlflow_server(store, tmp_path, port=port):
                print(f"\nMLflow server away for {time.monotonic() - away:.0f} s")
                assert_study_survived(driver, tmp_path, url, "cloud", epochs)
        finally:
            stop_driver(driver)
        bucket = s3_client(s3).list_objects_v2(Bucket="studies", Prefix="results/cloud/")
        keys = [item["Key"] for item in bucket.get("Contents", [])]
        assert any("/checkpoint_" in key for key in keys), keys  # the checkpoints are there
        delivered = [key for key in keys if key.endswith("/tracking/delivered")]
        assert delivered, keys  # the driver sent spools from the bucket, and said so there
