"""MLflow's login as the compose stack turns it on, run for real against the local
PostgreSQL: ``mlflow server --app-name basic-auth`` with the ``[mlflow]`` settings of
docker-compose.yml's ``mlflow-auth`` config, its user store in a PostgreSQL database
and the admin account from the environment (as the stack's ``.env`` gives them).

- ``/health`` (the stack's health check) answers without a login; every API call
  without one, or with a wrong password, is refused and writes nothing.
- MLflow's client logs in with ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``
  and writes runs, parameters and artifacts (served by the server).
- ``study run`` (driver and trials) and ``study status`` log in the same way, and say
  what is wrong when the login is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from finished_study import study_runs
from mlflow.exceptions import MlflowException
from runs import SMOKE, TINY
from servers import basic_auth_env, mlflow_server, postgres_database, postgres_reason, study

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def shipped_auth_settings() -> str:
    """The auth config file that docker-compose.yml gives the MLflow server."""
    return yaml.safe_load(COMPOSE.read_text())["configs"]["mlflow-auth"]["content"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    reason = postgres_reason()
    if reason is not None:
        pytest.skip(f"needs PostgreSQL for MLflow's stores: {reason}")
    folder = tmp_path_factory.mktemp("mlflow-auth")
    username, password = "admin", secrets.token_urlsafe(18)
    with (
        postgres_database("study_mlflow") as backend,
        postgres_database("study_mlflow_auth") as users,
    ):
        env = basic_auth_env(folder, users, username, password, shipped_auth_settings())
        with mlflow_server(backend, folder, app_name="basic-auth", env=env) as url:
            yield {"uri": url, "username": username, "password": password, "users": users}


@pytest.fixture
def logged_in(server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """MLflow's login variables set to the admin account for this test."""
    monkeypatch.setenv(LOGIN[0], server["username"])
    monkeypatch.setenv(LOGIN[1], server["password"])
    return server


def request(
    url: str, method: str = "GET", body: dict | None = None, login: tuple[str, str] | None = None
) -> tuple[int, Message, bytes]:
    """One HTTP request; (status, headers, body), errors included."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if login is not None:
        headers["Authorization"] = "Basic " + b64encode(":".join(login).encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_health_is_open_and_the_api_needs_a_login(server: dict[str, str]) -> None:
    uri = server["uri"]
    assert request(f"{uri}/health")[0] == 200  # the compose health check needs no login
    create = f"{uri}/api/2.0/mlflow/experiments/create"
    status, headers, _ = request(create, "POST", {"name": "anonymous"})
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Basic")
    wrong = (server["username"], server["password"] + "x")
    assert request(create, "POST", {"name": "wrong-password"}, wrong)[0] == 401
    assert request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=10")[0] == 401
    # Nothing was written; the admin sees that.
    admin = (server["username"], server["password"])
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=100"
    status, _, body = request(search, login=admin)
    assert status == 200
    names = {experiment["name"] for experiment in json.loads(body).get("experiments", [])}
    assert not names & {"anonymous", "wrong-password"}


def test_the_user_store_is_in_postgresql(server: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(server["users"]) as connection:
        rows = connection.execute("SELECT username, is_admin FROM users").fetchall()
    assert rows == [(server["username"], True)]


def test_mlflow_client_logs_in_from_the_environment(
    logged_in: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow.MlflowClient(logged_in["uri"])
    experiment = client.create_experiment("auth-client")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "filter", "binomial-5")
    (tmp_path / "note.txt").write_text("through the server, with a login\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    client.set_terminated(run.info.run_id)
    again = client.get_run(run.info.run_id)
    assert again.data.params == {"filter": "binomial-5"}
    assert again.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]

    monkeypatch.delenv(LOGIN[0])
    monkeypatch.delenv(LOGIN[1])
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(logged_in["uri"]).create_experiment("auth-client-anonymous")


def _env(uri: str, login: dict[str, str] | None) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in LOGIN}
    env.pop("RAY_ADDRESS", None)
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(ROOT))
    if login is not None:
        env.update({LOGIN[0]: login["username"], LOGIN[1]: login["password"]})
    return env


def test_study_run_and_status_log_in_with_mlflows_variables(
    server: dict[str, str], tmp_path: Path
) -> None:
    """A real study (one trial, one epoch, local Ray): the driver and the trial log in
    with the variables the compose stack gives its Ray nodes."""
    uri = server["uri"]
    refused = study("status", "anything", cwd=tmp_path, env=_env(uri, None))
    assert refused.returncode != 0
    assert "401" in refused.stderr and "MLFLOW_TRACKING_USERNAME" in refused.stderr
    assert "Traceback" not in refused.stderr

    one = ["--set", "model.filter=delta", "--set", "train.epochs=1", "--name", "smoke-auth"]
    result = study("run", str(SMOKE), *TINY, *one, cwd=tmp_path, env=_env(uri, server))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 of 1 trials complete" in result.stdout

    os.environ.update({LOGIN[0]: server["username"], LOGIN[1]: server["password"]})
    try:
        parent, children = study_runs(uri, "smoke-auth")
    finally:
        for key in LOGIN:
            os.environ.pop(key, None)
    assert parent.info.status == "FINISHED"
    assert [child.info.status for child in children] == ["FINISHED"]
    assert 0 <= children[0].data.metrics["test/acc"] <= 1  # logged by the trial

    status = study("status", "smoke-auth", cwd=tmp_path, env=_env(uri, server))
    assert status.returncode == 0, status.stderr
    assert "1 of 1 trials complete" in status.stdout
