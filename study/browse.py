"""``study ui``: the MLflow UI on a study's tracking store, opened on the study.

MLflow 3's UI starts in its GenAI view (traces, latency, token usage) unless the address
asks for model training (``?workflowType=machine_learning``) or the browser remembers
that choice: :func:`experiment_url` is the address that opens an experiment on its
runs, the one the service prints. :func:`serve` starts ``mlflow ui`` on a database store
(a tracking server needs none: its address is printed), optionally optuna-dashboard on
the study's Optuna storage, prints where to look and stops what it started on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

#: The UI's view for runs, parameters and metrics (its other view is ``genai``).
MODEL_TRAINING = "machine_learning"
#: Seconds ``mlflow ui`` may take to answer (it creates or migrates the database first).
START_TIMEOUT_S = 120


def experiment_url(base: str, experiment_id: str | None = None) -> str:
    """The address that opens experiment ``experiment_id`` (or the list of experiments)
    on its runs.

    >>> experiment_url("http://127.0.0.1:5000/", "3")
    'http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning'
    >>> experiment_url("http://127.0.0.1:5000")
    'http://127.0.0.1:5000/#/experiments?workflowType=machine_learning'
    """
    path = f"/#/experiments/{experiment_id}" if experiment_id else "/#/experiments"
    return f"{base.rstrip('/')}{path}?workflowType={MODEL_TRAINING}"


def is_server(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (which serves its own UI), not a store."""
    return uri.split("://", 1)[0].lower() in ("http", "https")


def check_port(host: str, port: int, field: str) -> None:
    """A one-line ``ValueError`` naming ``field`` when ``host:port`` cannot be bound."""
    if not 1 <= port <= 65535:
        raise ValueError(f"{field}: {port} is not a port (1 to 65535)")
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ValueError(
                f"{field}: cannot listen on {host}:{port} ({error.strerror})"
            ) from None


def _wait_until_up(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer at {url} within {START_TIMEOUT_S} s")


def _start(command: list[str]) -> subprocess.Popen:
    """A server in its own process group (Ctrl-C reaches us; we stop the whole group)."""
    return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def optuna_storage_of(uri: str, name: str, given: str | None = None) -> str:
    """The Optuna storage study ``name`` recorded (its resolved ``study.yaml``), with
    its password back from ``given`` or the environment where it was redacted."""
    from study.secrets import reveal
    from study.service.tracking import study_document

    recorded = str(study_document(uri, name)["study"]["optuna_storage"])
    return reveal(recorded, "study.optuna_storage", [given])


def serve(
    uri: str,
    name: str | None,
    host: str = "127.0.0.1",
    port: int = 5000,
    optuna: bool = False,
    optuna_port: int = 8080,
    optuna_storage: str | None = None,
) -> int:
    """Open the study's experiment in MLflow's UI (and its Optuna study in
    optuna-dashboard); block until Ctrl-C, then stop what was started. Returns 0."""
    from study.mlflow_layout import connect, find_parent

    client = connect(uri, field="--tracking-uri")
    experiment = find_parent(client, name).info.experiment_id if name else None
    started: list[subprocess.Popen] = []
    dashboard_command = None
    if optuna:
        if not name:
            raise ValueError("--optuna: name the study whose Optuna storage to open")
        storage = optuna_storage_of(uri, name, optuna_storage)
        try:
            import optuna_dashboard  # noqa: F401
        except ImportError:
            print(
                "optuna-dashboard is not installed here: `pip install optuna-dashboard`, "
                f"then `optuna-dashboard {storage}`",
                flush=True,
            )
        else:
            check_port(host, optuna_port, "--optuna-port")
            dashboard_command = [sys.executable, "-m", "optuna_dashboard", storage]
            dashboard_command += ["--host", host, "--port", str(optuna_port)]
    if is_server(uri):
        print(f"MLflow: {experiment_url(uri, experiment)}  (the server's own UI)", flush=True)
        if dashboard_command is None:
            return 0
    else:
        check_port(host, port, "--port")
    # The servers run in their own sessions (the terminal's Ctrl-C reaches this process
    # only): Ctrl-C and `kill` both end here, and `finally` stops them. Set explicitly,
    # since a SIGINT ignored by a parent process would be ignored here too.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _interrupt)
    try:
        if not is_server(uri):
            command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
            command += ["--host", host, "--port", str(port)]
            started.append(_start(command))
            base = f"http://{host}:{port}"
            _wait_until_up(f"{base}/health", started[-1], "mlflow ui")
            print(f"MLflow: {experiment_url(base, experiment)}", flush=True)
        if dashboard_command is not None:
            started.append(_start(dashboard_command))
            base = f"http://{host}:{optuna_port}"
            _wait_until_up(base, started[-1], "optuna-dashboard")
            print(f"Optuna: {base}/dashboard/studies", flush=True)
        print("Ctrl-C stops it.", flush=True)
        while all(process.poll() is None for process in started):
            time.sleep(0.5)
        ended = next(p for p in started if p.poll() is not None)
        raise RuntimeError(f"{' '.join(ended.args[2:4])} exited with code {ended.returncode}")
    except KeyboardInterrupt:
        return 0
    finally:
        for process in started:
            _stop(process)
