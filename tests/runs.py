"""Running the service as a user does, for the tests that need it: the shrunk smoke
space (``TINY``, ``FOUR``), ``study run`` as a background driver whose output goes to
``driver.log``, waiting on events (a run in MLflow, a line in that output) rather than
sleeping, and what a study that lived through an outage must show."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
#: Overrides of one quick trial (`study trial search_spaces/quick.yaml`): seconds on a CPU.
TRIAL_TINY = [
    "model.width=0.125",
    "data.train_images=768",
    "data.test_images=128",
    "data.validation=96",
    "train.epochs=3",
    "train.lr=0.05",
    "eval.images=64",
    "eval.feature_images=2",
    "eval.feature_shifts=2",
    "device=cpu",
]

TINY = [
    "--set",
    "data.train_images=256",
    "--set",
    "data.test_images=64",
    "--set",
    "data.validation=64",
    "--set",
    "train.epochs=2",
    "--set",
    "eval.images=32",
    "--set",
    "model.filter={choice: [delta, binomial-3]}",
    "--set",
    "augment.kind=none",
    "--set",
    "eval.log_model=false",  # seconds a trial; the smoke test turns it on and loads one
]


FOUR = [
    *TINY,
    "--set",
    "model.filter={choice: [delta, binomial-3, binomial-5, binomial-7]}",
    "--set",
    "study.concurrent=1",
]


def start_driver(args: list[str], folder: Path, env: dict) -> subprocess.Popen:
    """``study run SMOKE ARGS`` in the background; its output goes to
    ``folder/driver.log`` (a file, not a pipe nobody reads while we wait)."""
    with open(folder / "driver.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "study", "run", str(SMOKE), *args],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_driver(driver: subprocess.Popen | None) -> None:
    """Ctrl-C a background driver still running (then kill it): a failed test leaves no
    study running."""
    if driver is not None and driver.poll() is None:
        driver.send_signal(signal.SIGINT)
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            driver.kill()


def finish_driver(driver: subprocess.Popen, folder: Path, timeout: float = 600) -> str:
    """Wait for a background driver; its output."""
    driver.wait(timeout)
    return (folder / "driver.log").read_text()


def environment(tracking_uri: str, cluster: dict | None = None) -> dict[str, str]:
    env = {**(cluster["env"] if cluster else os.environ), "MLFLOW_TRACKING_URI": tracking_uri}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("RAY_ADDRESS", None)
    if cluster is None:  # a private instance, even while this module's cluster runs
        env["RAY_ADDRESS"] = "local"
    return env


def launch(args: list[str], folder, url: str, **settings: str):
    """``study run`` against the server at ``url``, MLflow's own request retries off
    (so that a short outage exercises what a long one would: the study's holding back,
    not MLflow's backoff): (driver, client, environment)."""
    env = {**environment(url), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", **settings}
    return start_driver(args, folder, env), mlflow.MlflowClient(url), env


def runs_with_an_epoch(client: mlflow.MlflowClient, name: str) -> int:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id])
    return sum("train/loss" in run.data.metrics for run in runs)


def assert_complete_without_restart(client: mlflow.MlflowClient, children, epochs: int) -> None:
    """Every child run FINISHED with its final metrics, every epoch logged exactly once,
    none restarted: what a study that survived an outage shows."""
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert sorted(steps) == list(range(1, epochs + 1)), steps  # once each, none lost
        assert child.info.status == "FINISHED" and "test/acc" in child.data.metrics
        assert "study.resumed_at_epoch" not in child.data.tags  # never restarted


def wait_until(condition, seconds: float, what: str, driver=None, folder=None) -> None:
    """Poll ``condition`` (an event: a run in MLflow, a line in the driver's output)
    until it holds; fail naming ``what`` after ``seconds`` or when the driver exits."""
    deadline = time.monotonic() + seconds
    while not condition():
        if driver is not None and driver.poll() is not None:
            log = (folder / "driver.log").read_text()[-3000:] if folder else ""
            raise AssertionError(f"the driver exited before {what}:\n{log}")
        assert time.monotonic() < deadline, f"no {what} in {seconds:.0f} s"
        time.sleep(0.3)


def driver_output(folder: Path) -> str:
    """What the background driver in ``folder`` has printed so far."""
    return (folder / "driver.log").read_text()


def assert_each_epoch_once(client, children, epochs: int) -> None:
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert sorted(steps) == list(range(1, epochs + 1)), steps
        finals = client.get_metric_history(child.info.run_id, "test/acc")
        assert len(finals) == 1, finals  # the final metrics once, not once per delivery


def assert_study_survived(driver, folder: Path, url: str, name: str, epochs: int, trials: int = 2):
    """What a study that lived through an outage shows: the driver ends with exit 0,
    every trial complete, none restarted, every epoch in MLflow once. Returns the
    children runs."""
    from finished_study import study_runs

    returncode = driver.wait(timeout=600)
    output = driver_output(folder)
    assert returncode == 0, output[-3000:]
    assert f"{trials} of {trials} trials complete" in output
    _, children = study_runs(url, name)
    assert len(children) == trials
    assert_complete_without_restart(mlflow.MlflowClient(url), children, epochs)
    return children
