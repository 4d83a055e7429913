"""The simulated trial: closed-form, deterministic, resumable, and through the real
service (local Ray, an MLflow server, Optuna) tagged so that no front of it passes for
a result."""

from __future__ import annotations

import json

import mlflow
import pytest
import yaml
from finished_study import study_runs
from runs import SMOKE, environment
from servers import mlflow_server, study

from study.mlflow_layout import SIMULATED_TAG
from study.trial.checkpoint import METRICS_FILE
from study.trial.config import from_mapping
from study.trial.run import run_trial
from study.trial.simulated import filter_bands, final_metrics

SIMULATED = {
    "simulate": {"enabled": True, "epoch_seconds": 0.0},
    "train": {"epochs": 6},
    "data": {"validation": 100},
}


def _config(**sections):
    return from_mapping({**SIMULATED, **sections})


def test_the_closed_form_orders_filters_as_the_paper_does():
    delta = final_metrics(_config(model={"filter": "delta"}))
    blurred = final_metrics(_config(model={"filter": "binomial-5"}))
    over = final_metrics(_config(model={"filter": "binomial-7"}))
    shifted = final_metrics(_config(model={"filter": "delta"}, augment={"kind": "shift"}))
    aps = final_metrics(_config(model={"filter": "delta", "downsample": "aps"}))
    assert blurred["test_consistency"] > shifted["test_consistency"] > delta["test_consistency"]
    assert blurred["test_acc"] > delta["test_acc"] > over["test_acc"] - 0.01
    assert over["test_consistency"] > blurred["test_consistency"]  # more blur, more invariant
    assert aps["test_consistency"] == 1.0
    content, leak = filter_bands("firwin(taps=9, cutoff=0.5)")
    assert 0 < leak < filter_bands("rect-2")[1] and content > filter_bands("binomial-5")[0]


def test_it_is_deterministic_per_seed_and_resumes_exactly(tmp_path):
    config = _config(model={"filter": "binomial-3"}, augment={"kind": "flip+shift"})
    whole = []
    run_trial(config, tmp_path / "a", report=whole.append, progress=False)
    assert [row["epoch"] for row in whole[:-1]] == [1, 2, 3, 4, 5, 6]
    assert whole[-1]["done"] and whole[-1]["test_acc"] == final_metrics(config)["test_acc"]

    class Stop(Exception):
        pass

    def stop_after_three(row):
        if row.get("epoch") == 3:
            raise Stop

    with pytest.raises(Stop):
        run_trial(config, tmp_path / "b", report=stop_after_three, progress=False)
    resumed = []
    run_trial(config, tmp_path / "b", report=resumed.append, progress=False)
    assert [row["epoch"] for row in resumed[:-1]] == [4, 5, 6]  # from its checkpoint
    drop = ("epoch_seconds", "seconds_this_run", "train_seconds")
    same = [{k: v for k, v in r.items() if k not in drop} for r in whole[3:]]
    again = [{k: v for k, v in r.items() if k not in drop} for r in resumed]
    assert again == same
    other_seed = _config(model={"filter": "binomial-3"}, augment={"kind": "flip+shift"}, seed=1)
    assert final_metrics(other_seed)["test_acc"] != final_metrics(config)["test_acc"]
    assert json.loads((tmp_path / "b" / METRICS_FILE).read_text())["eval_method"] == "simulated"


def test_a_simulated_study_runs_through_the_service_and_is_tagged(tmp_path):
    args = [
        "--set", "simulate.enabled=true",
        "--set", "simulate.epoch_seconds=0.05",
        "--set", "train.epochs=4",
        "--set", "model.filter={choice: [delta, binomial-5, 'firwin(taps=7, cutoff=0.5)']}",
        "--name", "simulated",
    ]  # fmt: skip
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        env = {**environment(url), "STUDY_TUNE_RESULT_FILES": "1"}  # read below
        # --verbose: Ray's, Tune's and Optuna's own lines come back (study.service.quiet)
        result = study("--verbose", "run", str(SMOKE), *args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "6 of 6 trials complete" in result.stdout
        assert "A new study created" in result.stderr  # Optuna's INFO line
        assert "Configuration for experiment" in result.stdout  # Tune's box
        parent, children = study_runs(url, "simulated")
        assert parent.data.tags[SIMULATED_TAG] == "true" and len(children) == 6
        client = mlflow.MlflowClient(url)
        for child in children:
            assert child.info.status == "FINISHED"
            assert child.data.tags[SIMULATED_TAG] == "true"
            document = yaml.safe_load(SMOKE.read_text())
            del document["study"]
            document["model"]["filter"] = child.data.params["model.filter"]
            document["augment"]["kind"] = child.data.params["augment.kind"]
            config = from_mapping({**document, "simulate": {"enabled": True}})
            expected = final_metrics(config)
            assert child.data.metrics["test/acc"] == pytest.approx(expected["test_acc"])
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/acc")]
            assert sorted(steps) == [1, 2, 3, 4]
        # Tune got a checkpoint only with the last epoch and the end (the default policy:
        # every 30 s, and these trials take 0.2 s), so no experiment snapshot was forced.
        results = sorted((tmp_path / "ray_results" / "simulated").glob("trial_*/result.json"))
        assert len(results) == 6
        for path in results:
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            checkpointed = [
                (r.get("epoch"), r["complete"]) for r in rows if r.get("checkpoint_dir_name")
            ]
            assert checkpointed == [(4, False), (None, True)], (path, checkpointed)
        refused = study("pareto", "simulated", "--out", "front", cwd=tmp_path, env=env)
        assert refused.returncode == 2 and "is simulated" in refused.stderr
        assert not (tmp_path / "front").exists()
        exported = study(
            "pareto", "simulated", "--out", "front", "--simulated", cwd=tmp_path, env=env
        )
        assert exported.returncode == 0, exported.stderr
        assert (tmp_path / "front" / "pareto.csv").is_file()
