"""PostgreSQL restarted mid-study (an upgrade, a failover): it holds both the Optuna
storage and the MLflow server's backend store. A server of the test's own (``initdb``
on a free port), stopped with a fast shutdown (open connections cut) and started again
on the same data: the study's storage calls wait for it, the trials' records wait in
their backlog, and the study completes with nothing lost or duplicated."""

from __future__ import annotations

import threading
import time

import mlflow
import optuna
import pytest
from finished_study import study_runs
from runs import (
    FOUR,
    TINY,
    assert_each_epoch_once,
    assert_study_survived,
    driver_output,
    environment,
    runs_with_an_epoch,
    start_driver,
    stop_driver,
    wait_until,
)
from servers import PrivatePostgres, mlflow_server, private_postgres, psycopg_url

from study.service.searcher import MLFLOW_RUN_ID
from study.service.storage import RedactingRDBStorage

REASON = PrivatePostgres.reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no private PostgreSQL: {REASON}")


def test_the_optuna_storage_waits_out_a_restart(tmp_path, capsys):
    with private_postgres(tmp_path / "pg") as server:
        storage = RedactingRDBStorage(psycopg_url(server.create_database("optuna")), patience=120)
        study = optuna.create_study(storage=storage, study_name="restart")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        server.stop()
        restart = threading.Timer(8, server.start)
        restart.start()
        away = time.monotonic()
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        restart.join()
        assert time.monotonic() - away >= 8  # the calls did wait for the server
        output = capsys.readouterr().out
        assert "unreachable (OperationalError): waiting up to 120 s" in output
        assert "reachable again" in output
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
        with pytest.raises(KeyError):  # a call the database answers still fails at once
            storage.get_trial(10**6)


def test_the_optuna_storage_gives_up_after_its_patience(tmp_path):
    with private_postgres(tmp_path / "pg") as server:
        storage = RedactingRDBStorage(psycopg_url(server.create_database("optuna")), patience=2)
        study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "gone")
        server.stop()
        started = time.monotonic()
        with pytest.raises(optuna.exceptions.StorageInternalError):
            storage.get_all_trials(study_id)
        assert time.monotonic() - started >= 2


def test_a_study_survives_a_postgres_restart(tmp_path):
    """The whole service with the Optuna storage, and MLflow's store too, on one
    PostgreSQL: it goes down once both trials have logged an epoch, stays down until the
    driver says it is waiting for the Optuna storage, and comes back; both trials
    complete without a restart, every epoch is in MLflow once, Optuna (read from
    PostgreSQL) and MLflow agree. The Optuna storage alone down while trials end and
    start: the test below."""
    epochs = 6
    args = [*TINY, "--set", f"train.epochs={epochs}", "--name", "pg-restart"]
    driver = None
    with private_postgres(tmp_path / "pg") as server:
        optuna_url = psycopg_url(server.create_database("optuna"))
        with mlflow_server(server.create_database("mlflow"), tmp_path) as url:
            env = {
                **environment(url),
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # the study's patience, not MLflow's
                "STUDY_OPTUNA_STORAGE": optuna_url,
            }
            try:
                driver = start_driver(args, tmp_path, env)
                client = mlflow.MlflowClient(url)
                deadline = time.monotonic() + 300
                while runs_with_an_epoch(client, "pg-restart") < 2:
                    assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "no epoch of both trials in 300 s"
                    time.sleep(0.5)
                server.stop()
                away = time.monotonic()
                # The driver met the outage: an Optuna call (a finished trial told, the
                # next asked) found the database gone and waits for it.
                wait_until(
                    lambda: (
                        "Optuna storage" in (text := driver_output(tmp_path))
                        and "unreachable" in text
                    ),
                    600,
                    "the driver waiting for the Optuna storage",
                    driver,
                    tmp_path,
                )
                server.start()
                print(f"\nPostgreSQL away for {time.monotonic() - away:.0f} s")
                children = assert_study_survived(driver, tmp_path, url, "pg-restart", epochs)
            finally:
                stop_driver(driver)
        trials = optuna.load_study(study_name="pg-restart", storage=optuna_url).trials
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        assert {t.user_attrs[MLFLOW_RUN_ID] for t in trials} == {c.info.run_id for c in children}


def test_trials_due_while_the_optuna_storage_is_down_wait_and_complete(tmp_path):
    """The Optuna storage (PostgreSQL) down while trials are due to start: one trial at
    a time, four trials, MLflow elsewhere. The database stops during trial 1's first
    epoch and comes back only once trial 1 has ended and the driver has said that it
    waits for the storage (telling trial 1's result and sampling trial 2 both need it).
    No trial can start without its sampled config, so trial 2 starts after the database
    is back; nothing fails, all four complete, each epoch is in MLflow once, Optuna and
    MLflow agree."""
    epochs, name = 2, "pg-due"
    args = [*FOUR, "--set", f"train.epochs={epochs}", "--name", name]
    driver = None
    log = tmp_path / "driver.log"
    with private_postgres(tmp_path / "pg") as server:
        optuna_url = psycopg_url(server.create_database("optuna"))
        with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
            env = {**environment(url), "STUDY_OPTUNA_STORAGE": optuna_url}
            client = mlflow.MlflowClient(url)

            def first_trial_ended_and_the_driver_waits() -> bool:
                if "unreachable (OperationalError): waiting up to" not in log.read_text():
                    return False
                return any(c.info.status == "FINISHED" for c in study_runs_or_none(url, name))

            try:
                driver = start_driver(args, tmp_path, env)
                wait_until(lambda: runs_with_an_epoch(client, name) >= 1, 300,
                           "trial 1's first epoch", driver, tmp_path)  # fmt: skip
                server.stop()
                down = time.time()
                wait_until(first_trial_ended_and_the_driver_waits, 300,
                           "trial 1 ended and the driver waiting", driver, tmp_path)  # fmt: skip
                up = time.time()
                server.start()
                returncode = driver.wait(timeout=600)
                output = log.read_text()
                assert returncode == 0, output[-3000:]
                assert "4 of 4 trials complete" in output and "reachable again" in output
                parent, children = study_runs(url, name)
                assert parent.info.status == "FINISHED" and len(children) == 4
                assert all(c.info.status == "FINISHED" for c in children)
                assert_each_epoch_once(client, children, epochs)
                ends = sorted(c.info.end_time / 1000 for c in children)
                starts = sorted(float(c.data.tags["study.started_at"]) for c in children)
                assert down < ends[0] < up, (down, ends[0], up)  # trial 1 ended in the outage
                assert starts[1] > up, (up, starts)  # trial 2 waited for the storage
            finally:
                stop_driver(driver)
        trials = optuna.load_study(study_name=name, storage=optuna_url).trials
        assert [t.state.name for t in trials] == ["COMPLETE"] * 4
        assert {t.user_attrs[MLFLOW_RUN_ID] for t in trials} == {c.info.run_id for c in children}


def study_runs_or_none(url: str, name: str) -> list:
    """The child runs of study ``name`` so far (none before its parent exists)."""
    try:
        return study_runs(url, name)[1]
    except AssertionError:
        return []
