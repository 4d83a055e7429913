"""Losing a worker node mid-study: on a real two-node ``ray start`` cluster on loopback,
the second node (its raylet and every process under it) is killed while it trains a
trial; Tune retries that trial on the surviving node from its last checkpoint, in the
same MLflow child run, and the study completes with exactly the planned trials, every
epoch logged once, Optuna and MLflow agreeing. Its own cluster, so that no other test
meets a cluster with a node missing."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import mlflow
import optuna
from finished_study import study_runs
from optuna.storages.journal import JournalFileBackend
from runs import TINY, environment, finish_driver, start_driver
from servers import mlflow_server, ray_cluster, wait_for

from study.service.searcher import MLFLOW_RUN_ID

HEAD_MARKER = "node:__internal_head__"  # in the head raylet's --static_resource_list


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (parent, title)
    return found


def kill_worker_node(temp_dir: str) -> list[int]:
    """SIGKILL the raylet of the cluster's non-head node and all its descendants (the
    trial workers, the node's agents). Returns the pids killed."""
    processes = _processes()
    raylets = [
        pid
        for pid, (_, title) in processes.items()
        if "/raylet/raylet " in title and temp_dir in title and HEAD_MARKER not in title
    ]
    assert len(raylets) == 1, f"expected one worker-node raylet, found {raylets}"
    doomed, frontier = set(raylets), list(raylets)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in processes.items() if ppid == parent]
        doomed.update(children)
        frontier.extend(children)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(doomed)


def test_a_lost_worker_node_costs_a_retry_not_a_trial(tmp_path):
    epochs = 6
    name = "node-loss"
    with (
        ray_cluster(nodes=2, cpus_per_node=1) as cluster,
        mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url,
    ):
        env = environment(url, cluster)
        # A checkpoint to Tune every epoch (the default is one every 30 s, longer than
        # this trial runs before the node is lost): what is tested is the resume from it.
        env["STUDY_CHECKPOINT_INTERVAL_S"] = "0"
        args = [
            *TINY,
            "--set",
            f"train.epochs={epochs}",
            "--set",
            "study.concurrent=2",
            "--set",
            "study.retries=2",
            "--name",
            name,
            "--address",
            cluster["address"],
        ]
        driver = start_driver(args, tmp_path, env)
        client = mlflow.MlflowClient(url)

        def both_trials_trained_an_epoch() -> bool:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                return False
            runs = client.search_runs([experiment.experiment_id])
            return sum("train/loss" in r.data.metrics for r in runs) >= 2

        try:
            wait_for(both_trials_trained_an_epoch, 300, "an epoch of each trial, one a node")
            killed = kill_worker_node(cluster["temp_dir"])
            print(f"\nkilled the worker node: {len(killed)} processes")
        finally:
            output = finish_driver(driver, tmp_path)
        assert driver.returncode == 0, output[-3000:]
        assert "2 of 2 trials complete" in output, output[-2000:]
        _, children = study_runs(url, name)
        assert len(children) == 2, "a retry logs into the trial's own child run"
        resumed = [c for c in children if "study.resumed_at_epoch" in c.data.tags]
        assert len(resumed) == 1, "exactly the lost node's trial was retried"
        assert 2 <= int(resumed[0].data.tags["study.resumed_at_epoch"]) <= epochs
        for child in children:
            assert child.info.status == "FINISHED"
            history = client.get_metric_history(child.info.run_id, "train/loss")
            assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    journal = tmp_path / "ray_results" / name / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.user_attrs[MLFLOW_RUN_ID] for t in trials} == {c.info.run_id for c in children}
