"""The study service end to end, on real components: ``study run`` on a local Ray
instance and on a two-node ``ray start`` cluster, a real ``mlflow server`` process
(PostgreSQL-backed where PostgreSQL is reachable), Optuna storage on PostgreSQL or a
journal file, a driver killed mid-study and resumed, and bad input refused up front.

The smoke space is shrunk with ``--set`` so each study takes tens of seconds on 2 CPUs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from finished_study import check_finished_study, study_runs
from runs import SMOKE, TINY, environment, finish_driver, start_driver
from servers import (
    mlflow_server,
    postgres_database,
    postgres_reason,
    ray_cluster,
    study,
    wait_for,
)

from study.mlflow_layout import PRUNED_TAG, ROLE_TAG, STOPPED_TAG, TRIAL_TAG


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A real ``mlflow server``: PostgreSQL backend where reachable, else SQLite."""
    folder = tmp_path_factory.mktemp("mlflow")
    reason = postgres_reason()
    if reason is None:
        with postgres_database("study_mlflow") as url, mlflow_server(url, folder) as server:
            yield {"uri": server, "backend": "postgresql", "store": url, "folder": folder}
    else:
        print(f"\nmlflow server on SQLite, not PostgreSQL: {reason}")
        store = f"sqlite:///{folder / 'mlflow.db'}"
        with mlflow_server(store, folder) as server:
            yield {"uri": server, "backend": "sqlite", "store": store, "folder": folder}


@pytest.fixture(scope="module")
def cluster():
    """A real two-node Ray cluster on loopback, one CPU per node."""
    with ray_cluster(nodes=2, cpus_per_node=1) as info:
        yield info


def trial_runs(client, name: str, filter_string: str = "") -> list:
    """The child runs of study ``name`` so far (none before its experiment exists)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], filter_string)
    return [r for r in runs if r.data.tags.get(ROLE_TAG) == "trial"]


def trial_worker_pids() -> list[int]:
    """Processes running a Ray Tune function trial (their title is set by Ray)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"ray::ImplicitFunc" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def assert_complete_study(uri: str, name: str, trials: int, epochs: int = 2):
    """The parent run and one complete child run per trial, with everything logged
    (:func:`finished_study.check_finished_study`), of a grid over the smoke filters."""
    parent, children = check_finished_study(
        uri, name, trials=trials, space=str(SMOKE), epochs=epochs
    )
    assert parent.data.params["study.trials"] == str(trials)
    assert "mlflow.source.git.commit" in parent.data.tags
    for child in children:
        params = child.data.params
        assert params["model.filter"] in ("delta", "binomial-3")
        assert params["filter.taps"] == ("1" if params["model.filter"] == "delta" else "3")
    return parent, children


def test_smoke_study_on_local_ray_with_mlflow_server(tracking, tmp_path):
    """Also: with OMP_NUM_THREADS=8 exported (common on clusters), the two concurrent
    trials each run torch on exactly the 1 CPU Tune reserved for it."""
    env = environment(tracking["uri"])
    env["OMP_NUM_THREADS"] = "8"
    storage_args = []
    with_postgres = tracking["backend"] == "postgresql"
    context = postgres_database("study_optuna") if with_postgres else None
    optuna_url = context.__enter__() if context else None
    try:
        if optuna_url:
            storage_args = ["--set", f"study.optuna_storage={optuna_url}"]
        models = ["--set", "eval.log_model=true"]
        result = study(
            "run",
            str(SMOKE),
            *TINY,
            *models,
            *storage_args,
            "--name",
            "smoke-local",
            cwd=tmp_path,
            env=env,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "2 of 2 trials complete" in result.stdout
        assert "front:" in result.stdout  # progress lines name the current front
        # A clean terminal: the service's lines only (study.service.quiet, docs/study.md)
        for noise in ("Traceback", "FileNotFoundError", "WARNING", "Configuration for"):
            assert noise not in result.stdout + result.stderr, result.stdout + result.stderr
        # Tune's per-trial result files are opt-in (STUDY_TUNE_RESULT_FILES): MLflow has them
        results = tmp_path / "ray_results" / "smoke-local"
        assert list(results.glob("trial_*")) and not list(results.rglob("result.json"))
        storage = optuna_url
        if not optuna_url:
            from optuna.storages.journal import JournalFileBackend

            journal = JournalFileBackend(str(results / "optuna.journal"))
            storage = optuna.storages.JournalStorage(journal)
        status = study("status", "smoke-local", cwd=tmp_path, env=env)
        assert status.returncode == 0, status.stderr
        # What the compose test checks of its study, the same function.
        _, children = check_finished_study(
            tracking["uri"],
            "smoke-local",
            trials=2,
            space=str(SMOKE),
            optuna_storage=storage,
            model=True,
            status_output=status.stdout,
        )
        assert_complete_study(tracking["uri"], "smoke-local", trials=2)
        assert [c.data.tags["study.threads"] for c in children] == ["1", "1"]
        for child in children:  # the training data as a dataset input; the Optuna trial
            (entry,) = (
                mlflow.MlflowClient(tracking["uri"])
                .get_run(child.info.run_id)
                .inputs.dataset_inputs
            )
            assert entry.dataset.name == "shapes (256 training images)"
            assert child.data.tags["study.optuna_trial"] in {"0", "1"}
        assert [c.data.tags["study.threads"] for c in children] == ["1", "1"]
        trials = optuna.load_study(study_name="smoke-local", storage=storage).trials
        assert {t.params["model.filter"] for t in trials} == {"delta", "binomial-3"}  # the grid
        import torch
        from mlflow import pytorch as mlflow_pytorch

        mlflow.set_tracking_uri(tracking["uri"])
        model = mlflow_pytorch.load_model(f"runs:/{children[0].info.run_id}/model")
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)  # shapes: 10 classes

        again = study("run", str(SMOKE), *TINY, "--name", "smoke-local", cwd=tmp_path, env=env)
        assert again.returncode == 2
        assert "exists already" in again.stderr and "Traceback" not in again.stderr
    finally:
        if context:
            context.__exit__(None, None, None)


def test_trials_land_on_both_nodes_of_a_two_node_cluster(tracking, cluster, tmp_path):
    env = environment(tracking["uri"], cluster)
    args = [*TINY, "--set", "study.concurrent=2", "--name", "smoke-cluster"]
    result = study("run", str(SMOKE), *args, "--address", cluster["address"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _, children = assert_complete_study(tracking["uri"], "smoke-cluster", trials=2)
    nodes = {child.data.tags["study.node_id"] for child in children}
    assert len(nodes) == 2, "one CPU per node and two concurrent trials: one on each node"


def test_killed_driver_resumes_with_exactly_the_planned_trials(tracking, cluster, tmp_path):
    env = environment(tracking["uri"], cluster)
    name = "smoke-resume"
    args = [
        *TINY,
        "--set",
        "train.epochs=3",
        "--set",
        "augment.kind={choice: [none, flip]}",
        "--set",
        "study.concurrent=2",
        "--name",
        name,
        "--address",
        cluster["address"],
    ]
    driver = start_driver(args, tmp_path, env)
    client = mlflow.MlflowClient(tracking["uri"])

    def one_trial_done() -> bool:
        if driver.poll() is not None:
            raise AssertionError(f"driver ended early:\n{finish_driver(driver, tmp_path)}")
        return bool(trial_runs(client, name, "attributes.status = 'FINISHED'"))

    wait_for(one_trial_done, 300, "the first complete trial")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _, children = study_runs(tracking["uri"], name)
    assert sum(c.info.status == "FINISHED" for c in children) < 4, "killed too late to test"

    elsewhere = tmp_path / "elsewhere"  # resume finds everything through MLflow
    elsewhere.mkdir()
    resumed = study("resume", name, "--address", cluster["address"], cwd=elsewhere, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "4 of 4 trials complete" in resumed.stdout
    _, children = study_runs(tracking["uri"], name)
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4
    assert len({c.data.tags[TRIAL_TAG] for c in finished}) == 4
    leftovers = [c for c in children if c.info.status != "FINISHED"]
    assert all(c.data.tags.get("study.orphaned") == "true" for c in leftovers), leftovers
    configs = {(c.data.params["model.filter"], c.data.params["augment.kind"]) for c in finished}
    assert len(configs) == 4, "the grid's 4 points, each once: the sampler kept its state"

    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "ray_results" / name / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name=name, storage=storage).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 4 and "RUNNING" not in states, states
    # Trials the killed driver asked for after Tune's last snapshot are failed, not lost.
    assert all(t.system_attrs.get("study.orphaned") for t in trials if t.state.name == "FAIL")


def test_ray_job_submit_runs_a_study_on_the_cluster(tracking, cluster, tmp_path):
    """The documented flow: `ray job submit --working-dir DIR -- study run ...` against
    the cluster's dashboard, with the tracking URI given through the runtime env."""
    import json
    import shutil

    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(SMOKE, work / "smoke.yaml")
    runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": tracking["uri"]}}
    submit = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"),
            "job",
            "submit",
            "--address",
            cluster["dashboard"],
            "--working-dir",
            str(work),
            "--runtime-env-json",
            json.dumps(runtime_env),
            "--",
            sys.executable,
            "-m",
            "study",
            "run",
            "smoke.yaml",
            *TINY,
            "--set",
            f"study.storage_path={tmp_path / 'results'}",
            "--name",
            "smoke-job",
        ],
        capture_output=True,
        text=True,
        env=environment(tracking["uri"], cluster),
        timeout=600,
    )
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in submit.stdout.lower()
    assert "2 of 2 trials complete" in submit.stdout
    assert_complete_study(tracking["uri"], "smoke-job", trials=2)


def test_a_killed_trial_is_retried_from_its_last_epoch(tracking, cluster, tmp_path):
    """FailureConfig retries plus per-epoch checkpoints (``STUDY_CHECKPOINT_INTERVAL_S=0``;
    the default hands Tune one every 30 s, longer than this whole trial): SIGKILL the
    trial's worker process after its second epoch; the retry resumes there, in the same
    child run, which holds every epoch once."""
    env = environment(tracking["uri"], cluster)
    env["STUDY_CHECKPOINT_INTERVAL_S"] = "0"
    name = "smoke-retry"
    args = [
        *TINY,
        "--set",
        "model.filter=binomial-3",
        "--set",
        "train.epochs=5",
        "--set",
        "study.retries=1",
        "--name",
        name,
        "--address",
        cluster["address"],
    ]
    driver = start_driver(args, tmp_path, env)
    client = mlflow.MlflowClient(tracking["uri"])

    def two_epochs_logged() -> bool:
        runs = trial_runs(client, name)
        return any(len(client.get_metric_history(r.info.run_id, "train/loss")) >= 2 for r in runs)

    wait_for(two_epochs_logged, 300, "two logged epochs")
    workers = trial_worker_pids()
    assert workers, "found no trial worker process to kill"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    output = finish_driver(driver, tmp_path)
    assert driver.returncode == 0, output[-3000:]
    _, children = study_runs(tracking["uri"], name)
    assert len(children) == 1, "the retry logs into the same child run"
    child = children[0]
    assert child.info.status == "FINISHED"
    resumed_at = int(child.data.tags["study.resumed_at_epoch"])
    assert 2 <= resumed_at <= 5, "resumed from a checkpoint, not from scratch"
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5], steps


def test_ctrl_c_stops_cleanly_and_resume_finishes(tracking, cluster, tmp_path):
    """SIGINT (Ctrl-C): Tune saves its state, the driver says how to continue and exits
    with 130, the interrupted child runs are KILLED (not orphaned); `study resume`
    finishes them in the same runs."""
    env = environment(tracking["uri"], cluster)
    name = "smoke-sigint"
    args = [*TINY, "--set", "train.epochs=4", "--name", name, "--address", cluster["address"]]
    driver = start_driver(args, tmp_path, env)
    client = mlflow.MlflowClient(tracking["uri"])

    def one_epoch_logged() -> bool:
        runs = trial_runs(client, name)
        return any(client.get_metric_history(r.info.run_id, "train/loss") for r in runs)

    wait_for(one_epoch_logged, 300, "a logged epoch")
    driver.send_signal(signal.SIGINT)
    output = finish_driver(driver, tmp_path, timeout=300)
    assert driver.returncode == 130, output[-3000:]
    assert f"study resume {name}" in output
    parent, children = study_runs(tracking["uri"], name)
    assert parent.info.status == "KILLED"
    stopped = [c for c in children if c.info.status != "FINISHED"]
    assert stopped, "interrupted too late to test"
    for child in stopped:
        assert child.info.status == "KILLED", child.info.status
        assert child.data.tags.get("study.interrupted") == "true"
        assert "study.orphaned" not in child.data.tags

    resumed = study("resume", name, "--address", cluster["address"], cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    _, children = assert_complete_study(tracking["uri"], name, trials=2, epochs=4)
    assert not any("study.interrupted" in c.data.tags for c in children)


# --- early stopping: MO-ASHA through the real service ------------------------------------------

# A grid of 2 filters x 3 learning rates, one trial at a time (so the rung populations,
# and with them the decisions, do not depend on timing), 4 epochs: rungs at epochs 1 and
# 2 (grace 1, eta 2). The smallest learning rates barely move in 4 epochs: dominated at
# a rung, stopped. Training is deterministic given the config, so two runs of this study
# decide the same.
MO_ASHA = [
    *TINY,
    "--set",
    "data.train_images=512",
    "--set",
    "data.validation=128",
    "--set",
    "train.epochs=4",
    "--set",
    "train.lr={choice: [0.05, 0.002, 0.0005]}",
    "--set",
    "study.objectives={val_acc: max, val_consistency: max}",
    "--set",
    "study.scheduler={kind: mo-asha, grace: 1, eta: 2}",
    "--set",
    "study.concurrent=1",
]


def decisions_of(uri: str, name: str) -> list[dict]:
    """The parent's scheduler/decisions.json, each trial id replaced by its config."""
    import json

    parent, children = study_runs(uri, name)
    path = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="scheduler/decisions.json", tracking_uri=uri
    )
    # A trial that a killed driver started after Tune's last snapshot is unknown to the
    # resumed study: its run (perhaps created before it logged a param) is orphaned.
    orphans = [c for c in children if c.data.tags.get("study.orphaned") == "true"]
    assert all(c.info.status == "KILLED" for c in orphans), [c.info.status for c in orphans]
    configs = {
        c.data.tags[TRIAL_TAG]: (c.data.params["model.filter"], c.data.params["train.lr"])
        for c in children
        if c not in orphans
    }
    log = json.loads(Path(path).read_text())
    assert log["settings"]["grace"] == 1 and log["settings"]["eta"] == 2
    assert log["settings"]["metrics"] == [["train_loss", "min"], ["val_consistency", "max"]]
    return [{**d, "trial_id": configs[d["trial_id"]]} for d in log["decisions"]]


def journal_trials(folder: Path, name: str) -> list:
    from optuna.storages.journal import JournalFileBackend

    journal = folder / "ray_results" / name / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=name, storage=storage).trials


@pytest.fixture(scope="module")
def scheduled(tracking, cluster, tmp_path_factory):
    """One uninterrupted study with MO-ASHA."""
    folder = tmp_path_factory.mktemp("moasha")
    env = environment(tracking["uri"], cluster)
    name = "moasha-full"
    args = [*MO_ASHA, "--name", name, "--address", cluster["address"]]
    result = study("run", str(SMOKE), *args, cwd=folder, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"name": name, "folder": folder, "stdout": result.stdout, "env": env}


def test_early_stopped_trials_are_pruned_in_optuna_mlflow_pareto_and_status(tracking, scheduled):
    uri, name, folder = tracking["uri"], scheduled["name"], scheduled["folder"]
    decisions = decisions_of(uri, name)
    stopped = {d["trial_id"]: d for d in decisions if not d["kept"]}
    assert 1 <= len(stopped) < 6, decisions  # some stopped, some went the whole way
    complete = 6 - len(stopped)
    assert f"{complete} of 6 trials complete, {len(stopped)} stopped early" in scheduled["stdout"]
    # one progress line per decision: trial, rung, kept/stopped, rank
    lines = [line for line in scheduled["stdout"].splitlines() if line.startswith("rung ")]
    assert len(lines) == len(decisions)
    assert sum(" stopped (rank " in line for line in lines) == len(stopped)

    parent, children = study_runs(uri, name)
    assert parent.info.status == "FINISHED"  # every planned trial complete or pruned
    assert parent.data.metrics["trials_complete"] == complete
    assert parent.data.metrics["trials_stopped"] == len(stopped)
    client = mlflow.MlflowClient(uri)
    for child in children:
        config = (child.data.params["model.filter"], child.data.params["train.lr"])
        epochs = [m.step for m in client.get_metric_history(child.info.run_id, "val/acc")]
        if config in stopped:
            decision = stopped[config]
            assert child.info.status == "KILLED"
            assert child.data.tags[PRUNED_TAG] == "true"
            assert child.data.tags[STOPPED_TAG] == str(decision["rung"])
            assert child.data.tags["study.rung_rank"] == str(decision["rank"])
            # the default rung metrics: train_loss for val_acc, val_consistency itself
            assert child.data.metrics["rung/train_loss"] == decision["values"][0]
            assert child.data.metrics["rung/val_consistency"] == decision["values"][1]
            assert sorted(epochs) == list(range(1, decision["rung"] + 1))
            # the whole row of the rung epoch, not only what Tune was told
            rates = [m.step for m in client.get_metric_history(child.info.run_id, "train/lr")]
            assert sorted(rates) == list(range(1, decision["rung"] + 1))
            assert not any(k.startswith("test/") for k in child.data.metrics)
        else:
            assert child.info.status == "FINISHED" and PRUNED_TAG not in child.data.tags
            assert sorted(epochs) == [1, 2, 3, 4]

    trials = journal_trials(folder, name)
    states = sorted(t.state.name for t in trials)
    assert states == sorted(["COMPLETE"] * complete + ["PRUNED"] * len(stopped)), states
    for trial in trials:
        if trial.state.name == "PRUNED":
            assert trial.values is None
            decision = stopped[(trial.params["model.filter"], str(trial.params["train.lr"]))]
            assert trial.user_attrs["rung"] == decision["rung"]
            assert trial.user_attrs["rung_decision"]["rank"] == decision["rank"]

    status = study("status", name, cwd=folder, env=scheduled["env"])
    assert status.returncode == 0, status.stderr
    assert f"{complete} of 6 trials complete, {len(stopped)} stopped early" in status.stdout
    pareto = study(
        "pareto", name, "--out", str(folder / "pareto"), cwd=folder, env=scheduled["env"]
    )
    assert pareto.returncode == 0, pareto.stderr
    assert f"({len(stopped)} stopped early, left out)" in pareto.stdout
    import json

    exported = json.loads((folder / "pareto" / "pareto.json").read_text())["studies"][0]
    assert exported["complete_trials"] == complete
    pruned_runs = {c.info.run_id for c in children if c.info.status == "KILLED"}
    assert not pruned_runs & {row["run_id"] for row in exported["front"]}
    assert not any(run in (folder / "pareto" / "trials.csv").read_text() for run in pruned_runs)


def test_a_killed_driver_resumes_with_the_same_decisions(tracking, cluster, scheduled, tmp_path):
    """SIGKILL the driver once a trial has been stopped at a rung; `study resume` restores
    the scheduler's decisions with Tune's experiment and decides the rest exactly as the
    uninterrupted study did."""
    uri, env, name = tracking["uri"], scheduled["env"], "moasha-resume"
    driver = start_driver(
        [*MO_ASHA, "--name", name, "--address", cluster["address"]], tmp_path, env
    )
    client = mlflow.MlflowClient(uri)

    def one_trial_pruned() -> bool:
        if driver.poll() is not None:
            raise AssertionError(f"driver ended early:\n{finish_driver(driver, tmp_path)}")
        return bool(trial_runs(client, name, "tags.`study.pruned` = 'true'"))

    wait_for(one_trial_pruned, 300, "the first stopped trial")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _, children = study_runs(uri, name)
    ended = [c for c in children if c.info.status == "FINISHED" or PRUNED_TAG in c.data.tags]
    assert len(ended) < 6, "killed too late to test"

    resumed = study("resume", name, "--address", cluster["address"], cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    expected = decisions_of(uri, scheduled["name"])
    assert decisions_of(uri, name) == expected
    stopped = sum(not d["kept"] for d in expected)
    assert f"{6 - stopped} of 6 trials complete, {stopped} stopped early" in resumed.stdout
    restored = re.search(r"; (\d+) rung decisions restored", resumed.stdout)
    assert restored and int(restored.group(1)) >= 1, resumed.stdout[-3000:]
    # decisions are printed once: the restored ones by the killed driver, the rest now
    printed = [line for line in resumed.stdout.splitlines() if line.startswith("rung ")]
    assert len(printed) == len(expected) - int(restored.group(1))

    parent, children = study_runs(uri, name)
    assert parent.info.status == "FINISHED"
    fates = {
        (c.data.params["model.filter"], c.data.params["train.lr"]): c.info.status
        for c in children
        if not c.data.tags.get("study.orphaned")
    }
    _, uninterrupted = study_runs(uri, scheduled["name"])
    assert fates == {
        (c.data.params["model.filter"], c.data.params["train.lr"]): c.info.status
        for c in uninterrupted
    }
    states = [t.state.name for t in journal_trials(tmp_path, name)]
    assert states.count("PRUNED") == stopped and states.count("COMPLETE") == 6 - stopped
    assert "RUNNING" not in states, states


def _files_holding(secret: bytes, folder: Path) -> list[str]:
    """Every file under ``folder`` whose bytes hold ``secret``."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                if secret in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def test_no_password_is_written_down(tracking, tmp_path):
    """An Optuna storage URL with a password (as the compose stack's
    STUDY_OPTUNA_STORAGE has): after a study, the password is in none of the MLflow
    store (params, tags, artifacts: the server's whole database and artifact folder),
    Ray's results folder (trial configs, the searcher's and Tune's pickles) or the
    command's output. Resume takes it back from the environment, and says so in one
    line when it is not there."""
    reason = postgres_reason()
    if reason is not None:
        pytest.skip(f"needs PostgreSQL for a storage URL with a password: {reason}")
    password = "Zq9-never-write-me-down"
    env = environment(tracking["uri"])
    with postgres_database("study_secret") as url:
        _, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        secret_url = f"postgresql+psycopg://{user}:{password}@{host}"
        env["STUDY_OPTUNA_STORAGE"] = secret_url  # trust auth here: the password is unused
        name = "smoke-secret"
        result = study("run", str(SMOKE), *TINY, "--name", name, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert password not in result.stdout + result.stderr
        assert _files_holding(password.encode(), tmp_path / "ray_results") == []
        assert _files_holding(password.encode(), tracking["folder"]) == []
        if tracking["backend"] == "postgresql":
            dump = subprocess.run(
                ["pg_dump", "--data-only", tracking["store"]], capture_output=True, text=True
            )
            assert dump.returncode == 0, dump.stderr
            assert "Zq9" not in dump.stdout and "postgres:***@" in dump.stdout
        parent, _ = study_runs(tracking["uri"], name)
        assert parent.data.params["study.optuna_storage"].startswith("postgresql+psycopg://")
        assert ":***@" in parent.data.params["study.optuna_storage"]

        without = {k: v for k, v in env.items() if k != "STUDY_OPTUNA_STORAGE"}
        refused = study("resume", name, cwd=tmp_path, env=without)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.startswith("study: error: study.optuna_storage: ")
        assert "recorded without its password" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        given = study("resume", name, "--optuna-storage", secret_url, cwd=tmp_path, env=without)
        assert given.returncode == 0, given.stdout[-3000:] + given.stderr[-3000:]
        assert "2 of 2 trials complete" in given.stdout
        assert password not in given.stdout + given.stderr
