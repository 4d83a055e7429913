"""A tracking server that goes away mid-study (an upgrade, a database failover): trials
keep training, their records wait in order and reach the server once each when it is
back; nothing fails or restarts. A real ``mlflow server``, stopped and started again
on the same port and store. MLflow's own request retries are turned off
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) so that a short outage exercises what a long
one would: the study's buffering, not MLflow's patience."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import optuna
from finished_study import study_runs
from optuna.storages.journal import JournalFileBackend
from runs import (
    FOUR,
    TINY,
    assert_each_epoch_once,
    assert_study_survived,
    driver_output,
    environment,
    launch,
    runs_with_an_epoch,
    start_driver,
    stop_driver,
    wait_until,
)
from servers import free_port, mlflow_server, ray_cluster

from study.mlflow_layout import MODEL_TAG, ROLE_TAG
from study.service.outbox import TrialLogger
from study.service.searcher import MLFLOW_RUN_ID


def _server_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_trial_logger_buffers_while_the_server_is_away(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    with mlflow_server(store, tmp_path, port=port) as url:
        client = mlflow.MlflowClient(url)
        run = client.create_run(client.create_experiment("outage"))
        logger = TrialLogger(url, run.info.run_id, patience=120)
        logger.epoch({"epoch": 1, "train_loss": 1.0})
    assert not _server_answers(url)
    logger.epoch({"epoch": 2, "train_loss": 0.9})  # returns at once: buffered
    logger.tags({"study.note": "while away"})
    logger.epoch({"epoch": 3, "train_loss": 0.8})
    assert logger.pending() == 3
    with mlflow_server(store, tmp_path, port=port):
        logger.epoch({"epoch": 4, "train_loss": 0.7})
        (tmp_path / "out").mkdir()
        logger.final({"test_acc": 0.5}, tmp_path / "out")
        history = client.get_metric_history(run.info.run_id, "train/loss")
        finished = client.get_run(run.info.run_id)
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7)]
    assert finished.info.status == "FINISHED" and finished.data.metrics["test/acc"] == 0.5
    assert finished.data.tags["study.note"] == "while away" and not logger.pending()


def test_a_retried_attempt_logs_each_epoch_once(tmp_path, monkeypatch, capsys):
    """What a retry does before it trains: it learns the epochs an earlier attempt
    logged (it may train them again from an older checkpoint, and must not log them
    twice), so backfilling a history adds only what the run lacks. A server that does
    not answer holds the attempt's records, in one line, and nothing fails."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run = client.create_run(client.create_experiment("retry"))
    logger = TrialLogger(store, run.info.run_id, patience=5)
    for epoch in (1, 2, 3):
        logger.epoch({"epoch": epoch, "train_loss": 1.0 / epoch})
    retry = TrialLogger(store, run.info.run_id, patience=5)
    retry.backfill([{"epoch": epoch, "train_loss": 0.5} for epoch in (1, 2, 3, 4)])
    retry.epoch({"epoch": 4, "train_loss": 0.4})  # trained again: not logged again
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.5)]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    away = TrialLogger(f"http://127.0.0.1:{free_port()}", run.info.run_id, patience=1)
    away.epoch({"epoch": 5, "train_loss": 0.3})
    assert away.pending() == 2 and away.run_id is None
    out = capsys.readouterr().out
    assert out.count("unreachable") == 1 and "holding its records back" in out


def test_final_metrics_and_the_model_are_written_once_however_often_delivered(tmp_path):
    """A spool delivered in part before the server went away again is delivered whole
    later, and an attempt resumed from a finished trial's checkpoint evaluates again:
    the run holds each final value once and one model (CI found ``final.test_acc``
    twice after a resume)."""
    import torch

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run = client.create_run(client.create_experiment("twice"))
    (tmp_path / "out").mkdir()
    model, example = torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3)
    for attempt in range(2):
        logger = TrialLogger(store, run.info.run_id, patience=5, work=tmp_path)
        logger.model(model, example)
        logger.final({"test_acc": 0.5, "test_consistency": 0.75 + attempt}, tmp_path / "out")
        assert not logger.pending()
    for name, value in (("test/acc", 0.5), ("test/consistency", 0.75)):
        assert [m.value for m in client.get_metric_history(run.info.run_id, name)] == [value]
    logged = client.search_logged_models([run.info.experiment_id])
    assert len([m for m in logged if m.source_run_id == run.info.run_id]) == 1


def test_a_refused_request_is_left_out_and_the_rest_goes_on(tmp_path, capsys):
    """A record the server refuses (a bad value) is no outage: it is left out with one
    line, and what follows is written; nothing waits for it or fails the trial."""
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        client = mlflow.MlflowClient(url)
        run = client.create_run(client.create_experiment("refused"))
        logger = TrialLogger(url, run.info.run_id, patience=5)
        logger.tags({"x" * 1000: "a tag key longer than MLflow allows"})
        logger.epoch({"epoch": 1, "train_loss": 1.0})
        assert not logger.pending()
        assert client.get_run(run.info.run_id).data.metrics["train/loss"] == 1.0
    assert "MLflow refused tags" in capsys.readouterr().out


def test_a_study_survives_a_tracking_outage(tmp_path):
    """The whole service: the server stops once the first epoch is in, stays away until
    the driver has said that both tiny trials are done (their remaining epochs trained
    and their records travelling with their last checkpoints), and comes back: both trials complete
    without a restart, every epoch is in MLflow exactly once, Optuna and MLflow agree."""
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    epochs = 6
    args = [*TINY, "--set", f"train.epochs={epochs}", "--name", "outage"]
    driver = None
    try:
        with mlflow_server(store, tmp_path, port=port) as url:
            driver, client, _ = launch(args, tmp_path, url)
            deadline = time.monotonic() + 300
            while runs_with_an_epoch(client, "outage") < 2:  # both trials under way
                assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no epoch of both trials in MLflow in 300 s"
                time.sleep(0.5)
        away = time.monotonic()
        # Both trials end while the server is away: their last epochs and final
        # metrics are held (the outage met them), then written once it is back.
        wait_until(lambda: driver_output(tmp_path).count(" done: ") >= 2, 600,
                   "both trials done while MLflow is away", driver, tmp_path)  # fmt: skip
        with mlflow_server(store, tmp_path, port=port):
            print(f"\nMLflow server away for {time.monotonic() - away:.0f} s")
            children = assert_study_survived(driver, tmp_path, url, "outage", epochs)
    finally:
        stop_driver(driver)
    journal = tmp_path / "ray_results" / "outage" / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="outage", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.user_attrs[MLFLOW_RUN_ID] for t in trials} == {c.info.run_id for c in children}


# --- outages at every moment of a trial's life ------------------------------------------


def started_trials(folder, name: str) -> int:
    """Trials Tune has started (each gets its folder as it starts)."""
    return len(list((folder / "ray_results" / name).glob("trial_*")))


def test_trials_that_start_while_mlflow_is_down_wait_and_complete(tmp_path):
    """(a) One trial at a time, four trials; the server stops during trial 1's first
    epoch and comes back only after two more trials have started (Tune made their
    folders, and their own start times fall in the outage): all four complete, every
    epoch once, the parent FINISHED, exit 0."""
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    epochs = 3
    args = [*FOUR, "--set", f"train.epochs={epochs}", "--name", "late"]
    driver = None
    try:
        with mlflow_server(store, tmp_path, port=port) as url:
            driver, client, _ = launch(args, tmp_path, url)
            wait_until(lambda: len(trial_names(client, "late")) >= 1, 300, "first child run",
                       driver, tmp_path)  # fmt: skip
        down = time.time()
        assert not _server_answers(url)
        wait_until(lambda: started_trials(tmp_path, "late") >= 3, 600, "two more trials started",
                   driver, tmp_path)  # fmt: skip
        up = time.time()
        with mlflow_server(store, tmp_path, port=port):
            returncode = driver.wait(timeout=600)
            output = (tmp_path / "driver.log").read_text()
            assert returncode == 0, output[-3000:]
            assert "4 of 4 trials complete" in output
            parent, children = study_runs(url, "late")
            assert parent.info.status == "FINISHED" and len(children) == 4
            assert all(c.info.status == "FINISHED" for c in children)
            assert_each_epoch_once(client, children, epochs)
            started = [float(c.data.tags["study.started_at"]) for c in children]
            assert sum(down < t < up for t in started) >= 2, (down, up, started)
            assert "reachable again" in output
    finally:
        stop_driver(driver)


def trial_names(client, name: str) -> list[str]:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id])
    return [r.info.run_name for r in runs if r.data.tags.get(ROLE_TAG) == "trial"]


def test_mlflow_stopping_as_a_trial_finishes_loses_nothing(tmp_path):
    """(b) The server stops once a trial has logged its last epoch, while it evaluates
    and sends its final metrics, model and figures: the trial ends at once (its records
    travel in its last checkpoint), and when the server is back the driver writes them:
    final metrics, the model, the figures, FINISHED."""
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    epochs = 2
    args = [
        *TINY, "--set", f"train.epochs={epochs}", "--set", "eval.log_model=true",
        "--set", "eval.images=64", "--set", "study.concurrent=1", "--name", "end",
    ]  # fmt: skip
    driver = None

    def last_epoch_logged() -> bool:
        experiment = client.get_experiment_by_name("end")
        if experiment is None:
            return False
        runs = client.search_runs([experiment.experiment_id])
        return any(
            len(client.get_metric_history(r.info.run_id, "train/loss")) == epochs for r in runs
        )

    try:
        with mlflow_server(store, tmp_path, port=port) as url:
            driver, client, _ = launch(args, tmp_path, url)
            wait_until(last_epoch_logged, 300, "a trial's last epoch", driver, tmp_path)
        done = lambda: "done:" in (tmp_path / "driver.log").read_text()  # noqa: E731
        wait_until(done, 300, "a trial done while MLflow is away", driver, tmp_path)
        with mlflow_server(store, tmp_path, port=port):
            returncode = driver.wait(timeout=600)
            output = (tmp_path / "driver.log").read_text()
            assert returncode == 0, output[-3000:]
            _, children = study_runs(url, "end")
            assert len(children) == 2
            assert_each_epoch_once(client, children, epochs)
            for child in children:
                assert child.info.status == "FINISHED"
                assert MODEL_TAG in child.data.tags
                files = {a.path for a in client.list_artifacts(child.info.run_id, "figures")}
                assert "figures/shift_heatmap.png" in files
                assert "test/consistency_crop" in child.data.metrics
            assert "study: MLflow at" in output and "reachable again" in output
    finally:
        stop_driver(driver)


def test_an_outage_longer_than_the_patience_fails_trials_and_resume_completes_them(tmp_path):
    """(c) The patience short (8 s), the outage long: the trials that train through it
    fail with one line naming the server, the study exits 1 saying how to go on, and
    `study resume` after the server is back completes them from their checkpoints,
    with their held-back records written once and nothing duplicated."""
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    # Simulated trials paced at 0.5 s an epoch: 20 s of training, so the 8 s patience
    # runs out mid-training whatever the machine's speed (tiny real epochs took 0.13 s
    # on CI: a trial could end before the patience did, and a completed trial ends as
    # completed, its records sent by the driver).
    epochs = 40
    args = [*TINY, "--set", f"train.epochs={epochs}", "--set", "study.retries=0",
            "--set", "simulate.enabled=true", "--set", "simulate.epoch_seconds=0.5",
            "--name", "patience"]  # fmt: skip
    driver = None
    try:
        with mlflow_server(store, tmp_path, port=port) as url:
            driver, client, env = launch(
                args,
                tmp_path,
                url,
                STUDY_TRACKING_PATIENCE_S="8",
                STUDY_CHECKPOINT_INTERVAL_S="0",
            )
            wait_until(lambda: runs_with_an_epoch(client, "patience") >= 2, 300,
                       "an epoch of both trials", driver, tmp_path)  # fmt: skip
        returncode = driver.wait(timeout=600)
        output = (tmp_path / "driver.log").read_text()
        assert returncode == 1, output[-3000:]
        assert output.count("unreachable for") >= 2 and "patience 8 s" in output
        assert "study resume patience" in output
        with mlflow_server(store, tmp_path, port=port):
            resumed = subprocess.run(
                [sys.executable, "-m", "study", "resume", "patience"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
            parent, children = study_runs(url, "patience")
            assert parent.info.status == "FINISHED" and len(children) == 2
            assert all(c.info.status == "FINISHED" for c in children)
            assert_each_epoch_once(client, children, epochs)
    finally:
        stop_driver(driver)


def test_a_study_that_fails_while_mlflow_is_away_shows_its_own_error(tmp_path, capsys):
    """`fit` raised: the parent is marked FAILED where MLflow answers; where it does not,
    one line says so and nothing is raised over the study's own error."""
    from study.service.runner import _mark_parent_failed

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run = client.create_run(client.create_experiment("failing"))
    _mark_parent_failed(store, run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    _mark_parent_failed(f"http://127.0.0.1:{free_port()}", run.info.run_id)  # away: no raise
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"could not mark the parent run {run.info.run_id}" in out


def test_the_drivers_own_steps_wait_out_an_outage(tmp_path, capsys):
    """What the driver cannot go on without (creating the parent run, reading it back,
    marking it RUNNING on resume) waits for the server with the study's patience: one
    line when the waiting starts, one when the server is back, the request done once.
    Past the patience: a one-line error naming the server."""
    import threading

    import pytest

    from study.service.tracking import PatientClient, TrackingTimeout, patiently

    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    with mlflow_server(store, tmp_path, port=port) as url:
        experiment = mlflow.MlflowClient(url).create_experiment("before")
    assert not _server_answers(url)
    attempts: list[float] = []

    def create_run() -> str:
        attempts.append(time.monotonic())
        return mlflow.MlflowClient(url).create_run(experiment).info.run_id

    result: dict[str, str] = {}
    caller = threading.Thread(
        target=lambda: result.update(run=patiently(url, "create the run", create_run, 300)),
        daemon=True,
    )
    caller.start()
    wait_until(lambda: len(attempts) >= 2, 180, "a second attempt")  # it waits, and retries
    assert "run" not in result
    with mlflow_server(store, tmp_path, port=port):
        caller.join(120)
        assert "run" in result
        runs = mlflow.MlflowClient(url).search_runs([experiment])
        assert [r.info.run_id for r in runs] == [result["run"]]  # created once
        output = capsys.readouterr().out
        assert output.count("unreachable") == 1, output
        assert output.count("reachable again") == 1 and "create the run done" in output, output
    with pytest.raises(TrackingTimeout, match=r"^MLflow at http://127\.0\.0\.1:\d+ unreachable"):
        PatientClient(url, patience=1).create_experiment("never")


def test_a_worker_node_that_cannot_reach_mlflow_loses_nothing(tmp_path):
    """The driver reaches MLflow, the node that runs the trials does not (its processes
    go through an HTTP proxy that is down, as behind a broken egress proxy; Ray's own
    gRPC bypasses it): the trials train as usual and hold every record, the driver
    writes them from the trials' checkpoints, and the study completes with each epoch
    in MLflow once. The trials' own output says that they could not reach the server."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    blocked = {
        "HTTP_PROXY": dead,
        "http_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
        "no_grpc_proxy": "127.0.0.1,localhost",  # Ray's own traffic goes direct
    }
    epochs = 3
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*TINY, "--set", f"train.epochs={epochs}", "--name", "unreachable-node"]
    with (
        mlflow_server(store, tmp_path) as url,
        ray_cluster(nodes=2, cpus_per_node=1, head_cpus=0, node_env=blocked) as cluster,
    ):
        env = {**environment(url, cluster), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        driver = start_driver([*args, "--address", cluster["address"]], tmp_path, env)
        try:
            children = assert_study_survived(driver, tmp_path, url, "unreachable-node", epochs)
        finally:
            stop_driver(driver)
        logs = Path(cluster["temp_dir"]).glob("session_*/logs/worker-*.out")
        said = "".join(path.read_text(errors="replace") for path in logs)
        assert "unreachable" in said and "holding its records back" in said, said[-3000:]
        tags = [mlflow.MlflowClient(url).get_run(c.info.run_id).data.tags for c in children]
        assert all(t.get("study.host") for t in tags)  # the trials' own tags arrived too
