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
from servers import PrivatePostgres, mlflow_server, private_postgres, psycopg_url
from test_service import TINY, environment, start_driver, stop_driver
from test_tracking_outage import assert_complete_without_restart, runs_with_an_epoch

from study.service.pruning import MLFLOW_RUN_ID
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


@pytest.mark.parametrize("on_postgres", ["optuna+mlflow", "optuna"])
def test_a_study_survives_a_postgres_restart(tmp_path, on_postgres):
    """The whole service with the Optuna storage, and MLflow's store too, on one
    PostgreSQL: it goes down once both trials have logged an epoch, stays down while
    they train on, and comes back; both trials complete without a restart, every epoch
    is in MLflow once, Optuna (read from PostgreSQL) and MLflow agree. With MLflow's
    store elsewhere the trials end while the database is away, so the driver's Optuna
    calls (telling the results) are the ones that wait."""
    epochs = 6
    args = [*TINY, "--set", f"train.epochs={epochs}", "--name", "pg-restart"]
    driver = None
    with private_postgres(tmp_path / "pg") as server:
        optuna_url = psycopg_url(server.create_database("optuna"))
        store = (
            server.create_database("mlflow")
            if "mlflow" in on_postgres
            else f"sqlite:///{tmp_path / 'mlflow.db'}"
        )
        with mlflow_server(store, tmp_path) as url:
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
                time.sleep(20)  # longer than the trials' remaining epochs take
                server.start()
                print(f"\nPostgreSQL away for {time.monotonic() - away:.0f} s")
                returncode = driver.wait(timeout=600)
                output = (tmp_path / "driver.log").read_text()
                assert returncode == 0, output[-3000:]
                assert "2 of 2 trials complete" in output
                if on_postgres == "optuna":
                    assert "unreachable (OperationalError): waiting up to" in output
                    assert "reachable again" in output
                _, children = study_runs(url, "pg-restart")
                assert len(children) == 2
                assert_complete_without_restart(client, children, epochs)
            finally:
                stop_driver(driver)
        trials = optuna.load_study(study_name="pg-restart", storage=optuna_url).trials
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        assert {t.user_attrs[MLFLOW_RUN_ID] for t in trials} == {c.info.run_id for c in children}
