"""Driving studies from Python and building on earlier ones: study.run / load /
studies, warm starts (--from), enqueued points, named objectives in Optuna, child runs
named by what they are, study list, and run --dry-run."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from runs import SMOKE
from servers import study

from study.service.space import SearchSpace
from study.trial.config import ConfigError

TINY = [
    "data.train_images=128",
    "data.test_images=32",
    "data.validation=32",
    "train.epochs=1",
    "eval.images=16",
    "eval.feature_images=0",
    "eval.figures=none",
    "eval.log_model=false",
    "augment.kind=none",
]


def sets(items: list[str]) -> list[str]:
    return [part for item in items for part in ("--set", item)]


def test_enqueued_points_are_checked_against_the_space():
    space = SearchSpace.load(SMOKE, ["study.sampler=tpe", "study.enqueue=[{model.filter: delta}]"])
    assert space.settings.enqueue == ({"model.filter": "delta"},)
    assert space.document()["study"]["enqueue"] == [{"model.filter": "delta"}]
    for point, message in [
        (
            "[{model.filter: gaussian}]",
            r"study.enqueue\[0\].model.filter: 'gaussian' is not allowed; allowed: delta",
        ),
        (
            "[{model.filtr: delta}]",
            r"study.enqueue\[0\].model.filtr: not a parameter of this space",
        ),
        ("[{}]", r"study.enqueue\[0\]: give a mapping"),
        ("delta", r"study.enqueue: give a list of mappings"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SearchSpace.load(SMOKE, ["study.sampler=tpe", f"study.enqueue={point}"])
    with pytest.raises(ConfigError, match="grid evaluates every point anyway"):
        SearchSpace.load(SMOKE, ["study.enqueue=[{model.filter: delta}]"])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    result = study(
        "run",
        str(SMOKE),
        "--dry-run",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'm.db'}",
        "--set",
        "study.optuna_storage=postgresql://u:hunter2@db/optuna",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing started" in result.stdout
    assert "8 (every point of the grid)" in result.stdout
    assert "postgresql://u:***@db/optuna" in result.stdout and "hunter2" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # no database, no results folder


def test_a_gp_study_past_its_measured_limit_is_warned_about_up_front(tmp_path):
    """GP refits to every trial so far (docs/SCALE.md): past 300 trials `study run` says
    what it will cost before anything starts; 300 or TPE say nothing."""
    simulated = SMOKE.parent / "simulated.yaml"
    tracking = ["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--dry-run"]
    warned = study(
        "run", str(simulated), "--set", "study.sampler=gp", "--set", "study.trials=1000",
        *tracking, cwd=tmp_path,
    )  # fmt: skip
    assert warned.returncode == 0, warned.stderr
    line = next(line for line in warned.stdout.splitlines() if "warning:" in line)
    assert "gp sampler refits to every trial so far" in line and "2.2 s at 1,000" in line
    assert "warning: the gp sampler" in warned.stderr  # also on stderr, one line
    for sets in (["study.sampler=gp", "study.trials=300"], ["study.sampler=tpe"]):
        args = [item for value in sets for item in ("--set", value)]
        quiet = study("run", str(simulated), *args, *tracking, cwd=tmp_path)
        assert quiet.returncode == 0 and "warning" not in quiet.stdout + quiet.stderr


def test_warm_start_enqueue_names_and_the_python_api(tmp_path):
    """Two real studies on a local Ray instance (in a subprocess, so this test process
    never holds Ray): the second starts from the first's complete trials."""
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = study(
        "run",
        str(SMOKE),
        "--name",
        "first",
        "--tracking-uri",
        tracking,
        *sets([*TINY, "study.sampler=random", "study.trials=2", "study.concurrent=2"]),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    arguments = {
        "space": str(SMOKE),
        "overrides": [
            *TINY,
            "study.sampler=tpe",
            "study.trials=3",
            "study.enqueue=[{model.filter: binomial-7}]",
        ],
        "tracking": tracking,
    }
    script = """
import json, sys, study
a = json.loads(sys.argv[1])
s = study.run(a["space"], a["overrides"], name="second", tracking_uri=a["tracking"],
              warm_from="first")
trials = s.trials()
print(json.dumps({
    "outcome": [s.outcome.complete, s.outcome.planned],
    "states": sorted(trials["state"]),
    "names": sorted(trials["run_name"]),
    "front": len(s.front()),
    "objectives": s.objectives,
    "studies": sorted(study.studies(a["tracking"])["name"]),
}))
"""
    second = subprocess.run(
        [sys.executable, "-c", script, json.dumps(arguments)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "warm start: 2 complete trials of first copied into second" in second.stdout
    seen = json.loads(second.stdout.strip().splitlines()[-1])
    assert seen["outcome"] == [3, 3] and seen["states"] == ["FINISHED"] * 3
    assert seen["objectives"] == {"test_acc": "max", "test_consistency": "max"}
    assert seen["studies"] == ["first", "second"] and seen["front"] >= 1
    # Child runs named by what they are, e.g. "binomial-7 / none (7f3a1c2e)".
    assert all(" / none (" in name for name in seen["names"]), seen["names"]
    assert any(name.startswith("binomial-7 / none") for name in seen["names"])  # enqueued

    journal = tmp_path / "ray_results" / "second" / "optuna.journal"
    from optuna.storages.journal import JournalFileBackend

    new = optuna.load_study(
        study_name="second",
        storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))),
    )
    assert new.metric_names == ["test_acc", "test_consistency"]
    copied = [t for t in new.trials if t.user_attrs.get("warm_start_from") == "first"]
    assert len(copied) == 2 and all(t.state.name == "COMPLETE" for t in copied)
    assert new.trials[2].params["model.filter"] == "binomial-7"  # the queued point first

    listed = study("list", "--tracking-uri", tracking, cwd=tmp_path)
    assert listed.returncode == 0 and "first" in listed.stdout and "second" in listed.stdout
    assert "3/3" in listed.stdout

    refused = study(
        "run",
        str(SMOKE),
        "--name",
        "third",
        "--from",
        "nosuch",
        "--tracking-uri",
        tracking,
        *sets([*TINY, "study.sampler=tpe", "study.objectives={val_acc: max}"]),
        cwd=tmp_path,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("study: error: --from: ")
    assert len(refused.stderr.strip().splitlines()) == 1
