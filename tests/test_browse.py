"""`study ui`: the MLflow UI started on a study's store, opened on the study, stopped
whole by Ctrl-C; bad input is one line and exit 2, and nothing is started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from servers import free_port, mlflow_server, study

from study.browse import check_port, experiment_url
from study.service import tracking

ROOT = Path(__file__).resolve().parents[1]


def make_study(uri: str, folder: Path, name: str = "browsed") -> str:
    """A study's parent run and one child, as the service writes them; the experiment id."""
    space = folder / "space.yaml"
    space.write_text(f"study: {{name: {name}}}\n")
    document = {"study": {"optuna_storage": str(folder / "optuna.journal")}}
    parent = tracking.start_parent(uri, name, name, {"study.trials": 1}, space, document)
    client = mlflow.MlflowClient(uri)
    tracking.open_child_run(client, parent, "trial_00000", f"{name}-trial-00")
    return client.get_run(parent).info.experiment_id


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def ui_processes(port: int) -> list[int]:
    """Processes whose command line serves ``port`` (mlflow ui and its workers)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"--port {port}" in line or (f":{port}" in line and "uvicorn" in line):
            found.append(int(proc.name))
    return found


def test_study_ui_opens_the_study_and_ctrl_c_stops_everything(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = make_study(uri, tmp_path)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "study", "ui", "browsed", "--tracking-uri", uri]
    ui = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while not any(line.startswith("MLflow: ") for line in lines):
            assert time.monotonic() < deadline and ui.poll() is None, "".join(lines)
            lines.append(ui.stdout.readline())
        (address,) = [line.split(" ", 1)[1].strip() for line in lines if line.startswith("MLflow")]
        assert address == experiment_url(f"http://127.0.0.1:{port}", experiment)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200
        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        assert client.get_experiment(experiment).name == "browsed"  # the study's own store
        assert ui_processes(port), "no process serves the port"
        # What Ctrl-C sends to the foreground process. Handled even where the parent
        # ignores SIGINT (ignored signals are inherited: pytest after a Ray test here).
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0
        output = "".join(lines) + ui.stdout.read()
        assert "Traceback" not in output and "Ctrl-C stops it" in output
        deadline = time.monotonic() + 30
        while (listening(port) or ui_processes(port)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not listening(port) and not ui_processes(port), "mlflow ui left running"
    finally:
        if ui.poll() is None:
            ui.kill()
        for pid in ui_processes(port):  # a failed run leaves no server behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)


def test_study_ui_on_a_tracking_server_prints_its_address(tmp_path):
    """A tracking server serves its own UI: nothing is started, the address is printed."""
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        experiment = make_study(url, tmp_path)
        result = study("ui", "browsed", "--tracking-uri", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"MLflow: {experiment_url(url, experiment)}  (the server's own UI)" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["absent"], "name: no study 'absent'; known: browsed"),
        (["--tracking-uri", "sqlite:///nowhere/mlflow.db"], "--tracking-uri: no MLflow database"),
        (["--optuna"], "--optuna: name the study whose Optuna storage to open"),
        (["browsed", "--port", "70000"], "--port: 70000 is not a port (1 to 65535)"),
        (["browsed", "--port", "BUSY"], "--port: cannot listen on 127.0.0.1:"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_starts_nothing(tmp_path, args, message):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    make_study(uri, tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [str(busy.getsockname()[1]) if a == "BUSY" else a for a in args]
        if "--tracking-uri" not in args:
            args += ["--tracking-uri", uri]
        result = study("ui", *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert "MLflow:" not in result.stdout


def test_optuna_dashboard_missing_is_a_hint_not_a_failure(tmp_path, capsys):
    """Where optuna-dashboard is not installed, --optuna says how to get it and names
    the study's storage; on a tracking server nothing else is started."""
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("optuna-dashboard is installed here: the hint is not shown")
    from study.browse import serve

    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        make_study(url, tmp_path)
        assert serve(url, "browsed", optuna=True) == 0
    out = capsys.readouterr().out
    assert "optuna-dashboard is not installed here: `pip install optuna-dashboard`" in out
    assert re.search(r"`optuna-dashboard .*optuna\.journal`", out), out


def test_check_port_names_the_flag():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ValueError, match=r"^--x: cannot listen on 127\.0\.0\.1:\d+ \("):
            check_port("127.0.0.1", busy.getsockname()[1], "--x")
