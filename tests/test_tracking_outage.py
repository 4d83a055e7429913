"""A tracking server that goes away mid-study (an upgrade, a database failover): trials
keep training, their records wait in order and reach the server once each when it is
back; nothing fails or restarts. A real ``mlflow server``, stopped and started again
on the same port and store. MLflow's own request retries are turned off
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) so that a short outage exercises what a long
one would: the study's buffering, not MLflow's patience."""

from __future__ import annotations

import time
import urllib.request

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from servers import free_port, mlflow_server
from test_service import TINY, environment, start_driver, stop_driver, study_runs

from study.service.tracking import TrialLogger


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
    assert len(logger.backlog) == 3
    with mlflow_server(store, tmp_path, port=port):
        logger.epoch({"epoch": 4, "train_loss": 0.7})
        (tmp_path / "out").mkdir()
        logger.final({"test_acc": 0.5}, tmp_path / "out")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        finished = client.get_run(run.info.run_id)
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7)]
    assert finished.info.status == "FINISHED" and finished.data.metrics["final.test_acc"] == 0.5
    assert finished.data.tags["study.note"] == "while away" and not logger.backlog


def test_a_retried_attempt_logs_each_epoch_once(tmp_path, monkeypatch, capsys):
    """What a retry reads before it trains: the epochs an earlier attempt logged (it
    may train them again from an older checkpoint, and must not log them twice), and
    backfill adds only what the run lacks. A server that does not answer reads as none
    logged, in one line, and training goes on."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run = client.create_run(client.create_experiment("retry"))
    logger = TrialLogger(store, run.info.run_id, patience=5)
    for epoch in (1, 2, 3):
        logger.epoch({"epoch": epoch, "train_loss": 1.0 / epoch})
    logger.drain()
    assert logger.logged_epochs() == {1, 2, 3}
    rows = [{"epoch": epoch, "train_loss": 0.5} for epoch in (1, 2, 3, 4)]
    assert logger.backfill(rows, {1, 2, 3}) == {4}
    logger.drain()
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    away = TrialLogger(f"http://127.0.0.1:{free_port()}", run.info.run_id, patience=1)
    assert away.logged_epochs() == set()
    assert "could not read the logged epochs" in capsys.readouterr().out


def test_a_refused_request_still_fails_at_once(tmp_path):
    """Buffering is for a server that is away, not for a request it refuses."""
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        client = mlflow.MlflowClient(url)
        run = client.create_run(client.create_experiment("refused"))
        logger = TrialLogger(url, run.info.run_id, patience=5)
        with pytest.raises(mlflow.exceptions.MlflowException):
            logger.tags({"x" * 1000: "a tag key longer than MLflow allows"})
        assert not logger.backlog


def test_a_study_survives_a_tracking_outage(tmp_path):
    """The whole service: the server stops once the first epoch is in, stays away while
    the tiny trials train their remaining epochs (and wait to report their end), and
    comes back: both trials complete without a restart, every epoch is in MLflow
    exactly once, Optuna and MLflow agree."""
    store, port = f"sqlite:///{tmp_path / 'mlflow.db'}", free_port()
    epochs = 6
    args = [*TINY, "--set", f"train.epochs={epochs}", "--name", "outage"]
    driver = None
    try:
        with mlflow_server(store, tmp_path, port=port) as url:
            env = {**environment(url), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
            driver = start_driver(args, tmp_path, env)
            client = mlflow.MlflowClient(url)
            deadline = time.monotonic() + 300
            while runs_with_an_epoch(client, "outage") < 2:  # both trials under way
                assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no epoch of both trials in MLflow in 300 s"
                time.sleep(0.5)
        away = time.monotonic()
        time.sleep(20)  # longer than the trials' remaining epochs take
        with mlflow_server(store, tmp_path, port=port):
            print(f"\nMLflow server away for {time.monotonic() - away:.0f} s")
            returncode = driver.wait(timeout=600)
            output = (tmp_path / "driver.log").read_text()
            assert returncode == 0, output[-3000:]
            assert "2 of 2 trials complete" in output
            _, children = study_runs(url, "outage")
            assert len(children) == 2
            assert_complete_without_restart(client, children, epochs)
    finally:
        stop_driver(driver)
    journal = tmp_path / "ray_results" / "outage" / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="outage", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {c.info.run_id for c in children}


def runs_with_an_epoch(client: mlflow.MlflowClient, name: str) -> int:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id])
    return sum("train_loss" in run.data.metrics for run in runs)


def assert_complete_without_restart(client: mlflow.MlflowClient, children, epochs: int) -> None:
    """Every child run FINISHED with its final metrics, every epoch logged exactly once,
    none restarted: what a study that survived an outage shows."""
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, epochs + 1)), steps  # once each, none lost
        assert child.info.status == "FINISHED" and "final.test_acc" in child.data.metrics
        assert "study.resumed_at_epoch" not in child.data.tags  # never restarted
