"""Pareto fronts: sorting and hypervolume against brute force, an MLflow round trip on a
real SQLite store, and `study pareto`'s input errors."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from study.mlflow_layout import (
    FRONT_NOTE_BEGIN,
    NOTE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
)
from study.pareto import command, encoding, export, plots, tables
from study.pareto import front as fr

# --- (a) properties against brute force -------------------------------------------------


def _better(a: np.ndarray, b: np.ndarray, signs: np.ndarray) -> bool:
    """a dominates b (signs: +1 max, -1 min)."""
    sa, sb = a * signs, b * signs
    return bool(np.all(sa >= sb) and np.any(sa > sb))


def _brute_ranks(values: np.ndarray, directions: list[str]) -> list[int]:
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    ranks = [0] * len(values)
    left = set(range(len(values)))
    rank = 1
    while left:
        layer = {i for i in left if not any(_better(values[j], values[i], signs) for j in left)}
        for i in layer:
            ranks[i] = rank
        left -= layer
        rank += 1
    return ranks


def _brute_hypervolume(values: np.ndarray, directions: list[str], ref: np.ndarray) -> float:
    """Volume of the union of boxes [point, ref] (loss space), summed over the grid of
    every distinct coordinate: a cell counts when some point dominates its far corner."""
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    loss, r = values * signs, ref * signs
    loss = loss[np.all(loss < r, axis=1)]
    if len(loss) == 0:
        return 0.0
    axes = [np.unique(np.append(loss[:, j], r[j])) for j in range(loss.shape[1])]
    total = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = np.array([axes[j][c] for j, c in enumerate(cell)])
        high = np.array([axes[j][c + 1] for j, c in enumerate(cell)])
        if np.any(np.all(loss <= low, axis=1)):
            total += float(np.prod(high - low))
    return total


@st.composite
def point_sets(draw, max_points: int = 24, objectives: tuple[int, ...] = (1, 2, 3)):
    k = draw(st.sampled_from(objectives))
    n = draw(st.integers(0, max_points))
    # A small grid of levels makes ties and exact duplicates common.
    levels = draw(st.sampled_from([3, 5, 50]))
    grid = st.integers(0, levels - 1).map(lambda v: v / (levels - 1))
    rows = draw(st.lists(st.lists(grid, min_size=k, max_size=k), min_size=n, max_size=n))
    if rows and draw(st.booleans()):
        rows += [rows[0]] * draw(st.integers(1, 3))  # exact duplicates
    directions = draw(st.lists(st.sampled_from(["max", "min"]), min_size=k, max_size=k))
    return np.array(rows, dtype=float).reshape(len(rows), k), directions


@settings(max_examples=300, deadline=None)
@given(point_sets())
def test_ranks_and_front_match_brute_force(case):
    values, directions = case
    ranks = fr.nondominated_ranks(values, directions)
    assert ranks.tolist() == _brute_ranks(values, directions)
    assert fr.front_mask(values, directions).tolist() == (ranks == 1).tolist()
    # Identical points share a rank.
    for i, j in itertools.combinations(range(len(values)), 2):
        if np.array_equal(values[i], values[j]):
            assert ranks[i] == ranks[j]


@settings(max_examples=150, deadline=None)
@given(point_sets(max_points=12, objectives=(2, 3)), st.booleans())
def test_hypervolume_matches_brute_force(case, fixed_reference):
    values, directions = case
    k = values.shape[1]
    if fixed_reference:
        ref = np.array([0.25 if d == "max" else 0.75 for d in directions])
    else:
        ref = fr.default_reference(values, directions)
    expected = _brute_hypervolume(values, directions, ref)
    assert fr.hypervolume(values, directions, ref) == pytest.approx(expected, abs=1e-12)
    # Only the front counts, and order does not matter.
    mask = fr.front_mask(values, directions)
    assert fr.hypervolume(values[mask], directions, ref) == pytest.approx(expected, abs=1e-12)
    assert fr.hypervolume(values[::-1], directions, ref) == pytest.approx(expected, abs=1e-12)
    assert k in (2, 3)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_each_direction_with_one_two_and_three_objectives(k):
    """A chain (each point beats the next in every objective), unsorted, with a tie:
    minimising ranks it one way, maximising the other. Pins moocore 0.3.2's bug
    (``pareto_rank(x, maximise=[False])`` maximises one objective), which front.py
    avoids by negating columns itself."""
    base = np.array([0.1, 0.5, 0.3, 0.9, 0.3])
    values = np.repeat(base[:, None], k, axis=1)
    assert fr.nondominated_ranks(values, ["min"] * k).tolist() == [1, 3, 2, 4, 2]
    assert fr.nondominated_ranks(values, ["max"] * k).tolist() == [4, 2, 3, 1, 3]
    assert fr.front_mask(values, ["min"] * k).tolist() == [True, False, False, False, False]
    assert fr.front_mask(values, ["max"] * k).tolist() == [False, False, False, True, False]
    # Box between the best point and the reference 1 (min) or 0 (max), per objective.
    assert fr.hypervolume(values, ["min"] * k, [1.0] * k) == pytest.approx(0.9**k)
    assert fr.hypervolume(values, ["max"] * k, [0.0] * k) == pytest.approx(0.9**k)
    # Mixed directions: the first column maximised, the others minimised.
    if k > 1:
        mixed = values.copy()
        mixed[:, 0] = 1 - mixed[:, 0]
        directions = ["max"] + ["min"] * (k - 1)
        assert fr.nondominated_ranks(mixed, directions).tolist() == [1, 3, 2, 4, 2]


def test_front_uses_no_private_optuna_code():
    import ast

    source = Path(fr.__file__).read_text()
    imported = [
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert "moocore" in imported
    assert not [name for name in imported if name.startswith("optuna")], imported


def test_default_reference_rule_and_monotone_hypervolume():
    names = ["test_acc", "test_consistency"]
    rng = np.random.default_rng(0)
    values = rng.uniform(0.8, 1.0, size=(30, 2))
    ref = fr.default_reference(values, ["max", "max"], names)
    assert ref.tolist() == [0.0, 0.0]
    volumes = [fr.hypervolume(values[:n], ["max", "max"], ref) for n in range(1, 31)]
    assert all(b >= a for a, b in itertools.pairwise(volumes))
    # Unbounded metrics take the worst complete trial.
    ref = fr.default_reference([[1.0, 5.0], [2.0, 3.0]], ["max", "min"], ["x", "train_loss"])
    assert ref.tolist() == [1.0, 5.0]


def test_staircase_is_the_dominated_region_boundary():
    values = np.array([[0.9, 0.99], [0.95, 0.97], [0.93, 0.98], [0.91, 0.95]])
    steps = fr.staircase(values, ["max", "max"])
    assert steps.tolist() == [
        [0.95, 0.97],
        [0.93, 0.97],
        [0.93, 0.98],
        [0.9, 0.98],
        [0.9, 0.99],
    ]


def test_parse_objectives_errors():
    assert fr.parse_objectives({"test_acc": "MAX"}) == {"test_acc": "max"}
    for bad in ("", "test_acc:up", "test_acc:max,test_acc:min", ":max", "a b:max"):
        with pytest.raises(ValueError, match=r"^objectives: "):
            fr.parse_objectives(bad)


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="not finite"):
        fr.nondominated_ranks([[math.nan, 1.0]], ["max", "max"])
    with pytest.raises(ValueError, match="directions"):
        fr.front_mask([[1.0, 1.0]], ["max"])
    with pytest.raises(ValueError, match="reference"):
        fr.hypervolume([[1.0, 1.0]], ["max", "max"], [0.0])


# --- (b) MLflow round trip on a real store ---------------------------------------------

OBJECTIVES = {"test_acc": "max", "test_consistency": "max"}

# (filter, augment, status, test_acc, test_acc_shift_random, consistency, lr)
ALPHA = [
    ("delta", "none", "FINISHED", 0.916, 0.874, 0.881, 0.1),
    ("rect-2", "none", "FINISHED", 0.928, 0.893, 0.905, 0.1),
    ("rect-4", "none", "FINISHED", 0.932, 0.929, 0.977, 0.05),
    ("triangle-5", "none", "FINISHED", 0.933, 0.930, 0.982, 0.1),
    ("binomial-7", "none", "FINISHED", 0.930, 0.930, 0.981, 0.1),  # dominated by triangle-5
    ("rect-7", "none", "FINISHED", 0.908, 0.907, 0.988, 0.1),
    ("delta", "flip+crop", "FINISHED", 0.934, 0.937, 0.966, 0.1),
    ("binomial-5", "flip+crop", "FINISHED", 0.931, 0.932, 0.984, 0.1),
    ("binomial-5", "flip+crop", "FINISHED", 0.931, 0.932, 0.984, 0.02),  # exact duplicate
    ("binomial-5", "flip+crop", "FINISHED", 0.925, 0.926, 0.980, 0.2),  # same cell, worse
    (
        "firwin(taps=7, cutoff=0.5, window=boxcar)",
        "flip+crop",
        "FINISHED",
        0.934,
        0.935,
        0.978,
        0.1,
    ),
    ("binomial-3", "none", "FAILED", 0.999, 0.999, 0.999, 0.1),  # must not count
    ("binomial-3", "flip", "RUNNING", 0.999, 0.999, 0.999, 0.1),  # must not count
]
BETA = [
    ("delta", "flip", "FINISHED", 0.920, 0.915, 0.950, 0.1),
    ("binomial-5", "flip", "FINISHED", 0.925, 0.924, 0.975, 0.1),
    ("rect-3", "flip", "FINISHED", 0.921, 0.921, 0.979, 0.1),
]


def _make_study(
    client,
    name: str,
    trials,
    experiment: str | None = None,
    objectives: str | None = "test_acc:max,test_consistency:max",
) -> str:
    from mlflow.entities import Metric, Param

    from study import filters

    experiment_id = client.create_experiment(experiment or name)
    parent = client.create_run(
        experiment_id, run_name=name, tags={STUDY_TAG: name, ROLE_TAG: "parent"}
    )
    parent_id = parent.info.run_id
    client.log_batch(
        parent_id,
        params=[
            Param("study.sampler", "tpe"),
            Param("study.seed", "0"),
            Param("study.trials", "13"),
            *([Param("study.objectives", objectives)] if objectives else []),
        ],
    )
    now = int(time.time() * 1000)
    for i, (spec, augment, status, acc, acc_rand, cons, lr) in enumerate(trials):
        info = filters.describe(spec)
        run = client.create_run(
            experiment_id,
            run_name=f"{name}-trial-{i:02d}",
            tags={
                PARENT_TAG: parent_id,
                STUDY_TAG: name,
                ROLE_TAG: "trial",
                TRIAL_TAG: f"{name}_{i:05d}",
            },
        )
        params = {
            "model.name": "vgg11_bn",
            "model.filter": info["filter"],
            "filter.family": info["family"],
            "filter.taps": info["taps"],
            "augment.kind": augment,
            "train.epochs": 2,
            "optuna.train.lr": lr,
            "optuna.model.filter": info["filter"],
        }
        final = {
            "test_acc": acc,
            "test_acc_shift_random": acc_rand,
            "test_acc_shift_mean": acc_rand,
            "test_consistency": cons,
            "test_variation": 1 - cons,
            "val_acc": round(acc - 0.02 * (i % 3), 4),
            "val_consistency": round(cons - 0.01 * (i % 2), 4),
            "train_loss": 0.5,
        }
        # written in the layout before metrics were grouped (``final.<name>``): every
        # reader here must keep reading it (tests/test_metric_layout.py: both layouts)
        metrics = [Metric(f"final.{k}", v, now + i, 0) for k, v in final.items()]
        metrics += [Metric("test_acc", acc - 0.01 * (2 - e), now + i, e) for e in range(2)]
        client.log_batch(
            run.info.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            metrics=metrics,
        )
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status, end_time=now + 1000 + i)
    return parent_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    parents = {
        "alpha": _make_study(client, "alpha", ALPHA),
        "beta": _make_study(client, "beta", BETA, experiment="beta-experiment"),
        "empty": _make_study(client, "empty", [ALPHA[-2]]),
        "gamma": _make_study(client, "gamma", BETA[:2]),
        "search": _make_study(
            client, "search", ALPHA, objectives="val_acc:max,val_consistency:max"
        ),
        "unsaid": _make_study(client, "unsaid", BETA, objectives=None),
    }
    # gamma: one more FINISHED trial that never logged final.test_consistency, and a NaN metric.
    from mlflow.entities import Metric

    gamma = client.get_run(parents["gamma"])
    run = client.create_run(
        gamma.info.experiment_id,
        run_name="gamma-partial",
        tags={PARENT_TAG: parents["gamma"], STUDY_TAG: "gamma"},
    ).info.run_id
    client.log_param(run, "model.filter", "binomial-3")
    client.log_metric(run, "final.test_acc", 0.99)
    client.set_terminated(run, "FINISHED")
    first = client.search_runs(
        [gamma.info.experiment_id], "attributes.run_name = 'gamma-trial-01'"
    )[0]
    client.log_batch(
        first.info.run_id,
        metrics=[Metric("final.train_loss", math.nan, int(time.time() * 1000) + 60_000, 0)],
    )
    return {"uri": uri, "client": client, "parents": parents}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    args = command.build_parser().parse_args(argv)
    code = command.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected(trials):
    finished = [t for t in trials if t[2] == "FINISHED"]
    values = np.array([[t[3], t[5]] for t in finished])
    return finished, fr.nondominated_ranks(values, ["max", "max"])


def test_export_round_trip(store, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["alpha", "beta", "--tracking-uri", store["uri"], "--out", str(out)], capsys
    )
    assert code == 0, stderr
    assert stderr == ""
    assert "alpha: 11 complete trials (2 not finished), front of" in stdout

    # pareto.csv is the computed front, value for value.
    with (out / "pareto.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for name, trials in (("alpha", ALPHA), ("beta", BETA)):
        finished, ranks = _expected(trials)
        front = {
            (t[0], t[1], t[3], t[5], t[6]) for t, r in zip(finished, ranks, strict=True) if r == 1
        }
        got = [row for row in rows if row["study"] == name]
        assert len(got) == int((ranks == 1).sum())
        from study import filters

        assert {
            (
                row["filter"],
                row["augment"],
                float(row["test_acc"]),
                float(row["test_consistency"]),
                float(row["optuna.train.lr"]),
            )
            for row in got
        } == {(filters.describe(f)["filter"], a, acc, c, lr) for f, a, acc, c, lr in front}
        for row in got:
            weights = json.loads(row["weights"])
            assert weights == filters.describe(row["filter"])["weights"]
            assert int(row["taps"]) == len(weights)
    # The exact duplicate is on the front twice; the failed and running runs are absent.
    alpha = [row for row in rows if row["study"] == "alpha"]
    assert sum(row["filter"] == "binomial-5" for row in alpha) == 2
    assert "binomial-3" not in {row["filter"] for row in rows}

    # trials.csv: every complete trial with its rank.
    with (out / "trials.csv").open() as handle:
        trials_rows = list(csv.DictReader(handle))
    finished, ranks = _expected(ALPHA)
    got = sorted(
        (row["run_name"], int(row["rank"])) for row in trials_rows if row["study"] == "alpha"
    )
    names = [f"alpha-trial-{i:02d}" for i, t in enumerate(ALPHA) if t[2] == "FINISHED"]
    assert got == sorted(zip(names, ranks.tolist(), strict=True))

    # pareto.json agrees with the front functions.
    document = json.loads((out / "pareto.json").read_text())
    assert document["objectives"] == OBJECTIVES
    alpha_doc = document["studies"][0]
    values = np.array([[t[3], t[5]] for t in finished])
    assert alpha_doc["reference"] == [0.0, 0.0]
    assert alpha_doc["hypervolume"] == pytest.approx(
        _brute_hypervolume(values, ["max", "max"], np.zeros(2)), abs=1e-12
    )
    assert alpha_doc["complete_trials"] == 11
    assert alpha_doc["runs_by_status"] == {"FINISHED": 11, "FAILED": 1, "RUNNING": 1}

    # table.md: Table 1 layout, numbers equal to the runs' metrics.
    table = (out / "table.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:3] == ["Filter", "# Taps", "Weights"]
    assert header[3:6] == ["alpha / none: None", "alpha / none: Rand", "alpha / none: Consistency"]
    table_rows = {
        cells[0].strip("`"): cells
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])
    }
    assert next(iter(table_rows)) == "delta"  # Table 1 order: Delta first
    firwin = table_rows["firwin(taps=7, cutoff=0.5, window=boxcar)"]
    assert firwin[1:3] == ["7", "[-1, 0, 3, 4.71, 3, 0, -1]"]  # as printed in Table 1
    assert table_rows["binomial-5"][2] == "[1, 4, 6, 4, 1]"
    for spec, augment, status, acc, acc_rand, cons, _ in ALPHA + BETA:
        if status != "FINISHED" or (spec, augment) == ("binomial-5", "flip+crop"):
            continue
        study = "alpha" if (spec, augment, status, acc, acc_rand, cons, _) in ALPHA else "beta"
        start = header.index(f"{study} / {augment}: None")
        from study import filters

        cells = table_rows[filters.describe(spec)["filter"]]
        assert cells[start : start + 3] == [f"{100 * v:.2f}" for v in (acc, acc_rand, cons)]
    # Three binomial-5 flip+crop trials: the best-ranked one, with the count.
    start = header.index("alpha / flip+crop: None")
    assert table_rows["binomial-5"][start : start + 3] == ["93.10 (n=3)", "93.20", "98.40"]

    # The plots exist and are what they claim to be.
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "pareto.png").stat().st_size > 10_000
    assert "<svg" in (out / "pareto.svg").read_text()[:2000]
    html = (out / "pareto.html").read_text()
    assert len(html) > 100_000 and "plotly" in html
    alpha_front_ids = [row["run_id"] for row in alpha]
    assert all(run_id in html for run_id in alpha_front_ids)  # hover text names the run


def test_formats_subset_and_reference(store, tmp_path, capsys):
    out = tmp_path / "only-json"
    code, _, stderr = _run(
        [
            "alpha",
            "--tracking-uri",
            store["uri"],
            "--out",
            str(out),
            "--format",
            "json,md",
            "--objectives",
            "test_acc:max,test_variation:min",
            "--reference",
            "0.9,0.1",
        ],
        capsys,
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["pareto.json", "table.md"]
    document = json.loads((out / "pareto.json").read_text())
    study = document["studies"][0]
    assert study["reference"] == [0.9, 0.1]
    finished, _ = _expected(ALPHA)
    values = np.array([[t[3], 1 - t[5]] for t in finished])
    assert study["hypervolume"] == pytest.approx(
        _brute_hypervolume(values, ["max", "min"], np.array([0.9, 0.1])), abs=1e-12
    )


def test_partial_trials_and_nan_metrics(store, tmp_path, capsys):
    out = tmp_path / "gamma"
    code, stdout, stderr = _run(
        ["gamma", "--tracking-uri", store["uri"], "--out", str(out)], capsys
    )
    assert code == 0, stderr
    assert "gamma: 2 complete trials (1 finished without the objectives)" in stdout
    document = json.loads((out / "pareto.json").read_text(), parse_constant=pytest.fail)
    rows = {row["run_name"]: row for row in document["studies"][0]["front"]}
    assert rows["gamma-trial-01"]["final.train_loss"] is None
    assert "gamma-partial" not in (out / "trials.csv").read_text()


def test_update_parent_front_logs_metrics_and_artifacts(store):
    from study.pareto.store import update_parent_front

    client = store["client"]
    parent = store["parents"]["beta"]
    client.set_tag(parent, NOTE_TAG, "My own words.")
    summary = update_parent_front(store["uri"], parent, "test_acc:max,test_consistency:max")
    assert summary is not None
    assert summary.complete == 3
    # The description: the user's text kept, then the front, each trial linked once.
    update_parent_front(store["uri"], parent, "test_acc:max,test_consistency:max")
    note = client.get_run(parent).data.tags[NOTE_TAG]
    assert note.startswith("My own words.") and note.count(FRONT_NOTE_BEGIN) == 1, note
    experiment = client.get_run(parent).info.experiment_id
    linked = re.findall(rf"\(#/experiments/{experiment}/runs/(\w+)\)", note)
    assert sorted(linked) == sorted(summary.front_run_ids), note
    values = np.array([[t[3], t[5]] for t in BETA])
    assert summary.front_size == int(fr.front_mask(values, ["max", "max"]).sum())
    history = client.get_metric_history(parent, "front_size")
    assert [(m.step, m.value) for m in history] == [(3, float(summary.front_size))] * 2
    hv = client.get_metric_history(parent, "hypervolume")
    assert hv[0].step == 3
    assert hv[0].value == pytest.approx(fr.hypervolume(values, ["max", "max"], [0, 0]))
    artifacts = {a.path for a in client.list_artifacts(parent, "pareto")}
    assert artifacts == {
        "pareto/pareto.csv",
        "pareto/pareto.json",
        "pareto/pareto.png",
        "pareto/table.md",
    }
    # No complete trial yet: nothing logged.
    assert update_parent_front(store["uri"], store["parents"]["empty"], OBJECTIVES) is None
    assert client.get_metric_history(store["parents"]["empty"], "front_size") == []


# --- (c) bad input: one line on stderr, exit code 2, nothing written --------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["nosuch"],
            r"^study pareto: error: name: no study 'nosuch'; "
            r"known: alpha, beta, empty, gamma, search, unsaid$",
        ),
        (
            ["alpha", "--objectives", "test_acc:max,flops:min"],
            r"^study pareto: error: objectives: flops: no complete trial of study 'alpha' "
            r"logged it; logged: test_acc, .*val_consistency$",
        ),
        (
            ["empty"],
            r"^study pareto: error: name: study 'empty' has no complete trials yet "
            r"\(1 FAILED\)$",
        ),
        (["alpha", "--format", "csv,pdf"], r"^study pareto: error: format: 'pdf' is not one of"),
        (["alpha", "--format", ","], r"^study pareto: error: format: empty"),
        (
            ["alpha", "--objectives", "test_acc=max"],
            r"^study pareto: error: objectives: 'test_acc=max' is not NAME:max or NAME:min",
        ),
        (
            ["alpha", "--objectives", "test_acc:up"],
            r"^study pareto: error: objectives: test_acc:up has direction 'up'",
        ),
        (
            ["alpha", "--reference", "0"],
            r"^study pareto: error: reference: 1 numbers for 2 objectives",
        ),
        (["alpha", "--reference", "0,x"], r"^study pareto: error: reference: '0,x' is not"),
        (["alpha", "alpha"], r"^study pareto: error: name: a study is given twice"),
        ([], r"^study pareto: error: name: give at least one study name$"),
    ],
)
def test_bad_input(store, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code, stdout, stderr = _run([*argv, "--tracking-uri", store["uri"], "--out", str(out)], capsys)
    assert code == 2
    assert stdout == ""
    assert len(stderr.splitlines()) == 1, stderr
    assert __import__("re").match(message, stderr.strip()), stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "http://127.0.0.1:9",
            r"^study pareto: error: tracking_uri: cannot reach http://127.0.0.1:9 "
            r"\(Connection refused\)$",
        ),
        ("sqlite:///{tmp}/missing.db", r"^study pareto: error: tracking_uri: no MLflow database"),
    ],
)
def test_unreachable_tracking_uri(tmp_path, capsys, uri, message):
    out = tmp_path / "out"
    uri = uri.format(tmp=tmp_path)
    code, _, stderr = _run(["alpha", "--tracking-uri", uri, "--out", str(out)], capsys)
    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert __import__("re").match(message, stderr), stderr
    assert not out.exists()
    assert not (tmp_path / "missing.db").exists()  # reading never creates a database


def test_a_server_that_drops_every_connection_is_asked_once(tmp_path, capsys):
    """No retries with backoff (MLflow's client would retry for minutes): a server that
    accepts and drops every connection sees one request, and the command ends with one
    line naming the tracking URI."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    attempts, done = [], threading.Event()

    def drop_connections() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            attempts.append(1)
            connection.close()

    thread = threading.Thread(target=drop_connections, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        code, _, stderr = _run(["alpha", "--tracking-uri", uri, "--out", str(tmp_path)], capsys)
    finally:
        done.set()
        thread.join()
        listener.close()
    assert code == 2
    assert stderr.startswith(f"study pareto: error: tracking_uri: cannot reach {uri}"), stderr
    assert len(attempts) == 1, f"{len(attempts)} connections: the client retried"


def test_out_must_be_a_folder(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, stderr = _run(["alpha", "--out", str(target)], capsys)
    assert code == 2
    expected = f"study pareto: error: out: {target} exists and is not a folder; give a folder path"
    assert stderr.strip() == expected
    code, _, stderr = _run(["alpha"], capsys)
    assert stderr.strip() == "study pareto: error: out: required (--out DIR)"


def test_help_imports_neither_torch_nor_mlflow():
    code = (
        "import sys, contextlib, io\n"
        "from study.pareto import command\n"
        "with contextlib.redirect_stdout(io.StringIO()) as text:\n"
        "    try:\n"
        "        command.build_parser().parse_args(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert '--objectives' in text.getvalue()\n"
        "heavy = [m for m in ('torch', 'mlflow', 'matplotlib', 'plotly') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_formats_agree():
    from study.pareto import records

    assert command.FORMATS == export.FORMATS
    assert command.DELTA == records.DELTA_REFERENCE


def test_plots_with_one_and_three_objectives(store, tmp_path):
    from study.pareto.store import load_study

    for objectives in ("test_acc:max", "test_acc:max,test_consistency:max,test_variation:min"):
        trials = load_study(store["uri"], "alpha", objectives)
        written = export.export([trials], tmp_path / str(len(trials.names)), ["png", "html"])
        assert all(path.stat().st_size > 0 for path in written)


def test_table_without_weights_or_metrics():
    from study.pareto.store import StudyTrials, TrialRecord

    record = TrialRecord(
        study="s",
        run_id="r1",
        run_name="n",
        trial_id="t",
        filter="mystery(taps=3)",
        family="mystery",
        taps=3,
        weights=(),
        augment="-",
        objectives={"test_acc": 0.5, "test_consistency": 0.7},
        metrics={"test_acc": 0.5, "test_consistency": 0.7},
        params={},
    )
    trials = StudyTrials("s", "0", "p", dict(OBJECTIVES), [record])
    table = tables.table_markdown([trials])
    assert "| `mystery(taps=3)` | 3 | - | 50.00 | - | 70.00 |" in table


def test_module_runs_as_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "study.pareto.command", "alpha", "--format", "gif"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "study pareto: error: format: 'gif' is not one of " + ",".join(
        export.FORMATS
    )


def test_pareto_defaults_to_the_studys_objectives_and_reports_test_columns(store, tmp_path, capsys):
    """A search chooses its front on validation objectives; the exports and the summary
    show the test columns beside them (reported, never used to choose)."""
    out = tmp_path / "search"
    code, stdout, stderr = _run(
        ["search", "--tracking-uri", store["uri"], "--out", str(out), "--format", "csv"], capsys
    )
    assert code == 0, stderr
    with (out / "pareto.csv").open() as handle:
        header = next(csv.reader(handle))
    objectives_at = header.index("val_acc")
    assert header[objectives_at : objectives_at + 4] == [
        "val_acc",
        "val_consistency",
        "test_acc",
        "test_consistency",
    ]
    finished = [t for t in ALPHA if t[2] == "FINISHED"]
    values = np.array(
        [
            [round(t[3] - 0.02 * (i % 3), 4), round(t[5] - 0.01 * (i % 2), 4)]
            for i, t in enumerate(finished)
        ]
    )
    with (out / "pareto.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == int(fr.front_mask(values, ["max", "max"]).sum())
    assert "| test_acc=" in stdout and "val_acc=" in stdout


def test_a_study_without_recorded_objectives_needs_them_said(store, tmp_path, capsys):
    out = tmp_path / "unsaid"
    code, _, stderr = _run(["unsaid", "--tracking-uri", store["uri"], "--out", str(out)], capsys)
    assert code == 2 and "objectives: the study's parent run records none" in stderr
    code, _, stderr = _run(
        [
            "unsaid",
            "--tracking-uri",
            store["uri"],
            "--out",
            str(out),
            "--objectives",
            "test_acc:max,test_consistency:max",
            "--format",
            "json",
        ],
        capsys,
    )
    assert code == 0, stderr


def test_studies_with_different_objectives_share_a_plot_only_when_told(store, tmp_path, capsys):
    out = tmp_path / "mixed"
    code, _, stderr = _run(
        ["alpha", "search", "--tracking-uri", store["uri"], "--out", str(out)], capsys
    )
    assert code == 2 and "objectives: the studies optimise different metrics" in stderr


# --- (d) `study pareto` polish: --out in --help, --reference delta, the plot's encoding ---


def test_help_marks_out_as_required(capsys):
    text = command.build_parser().format_help()
    usage = text.split("\n\n")[0]
    assert "--out DIR" in usage and "[--out DIR]" not in usage
    assert "(required)" in text and "about 0.92" in " ".join(text.split())
    from study.cli import main

    with pytest.raises(SystemExit):
        main(["pareto", "--help"])
    shown = capsys.readouterr().out
    assert "--out DIR" in shown.split("\n\n")[0] and "[--out DIR]" not in shown


def test_reference_delta_measures_from_the_baseline_trial(store, tmp_path, capsys):
    out = tmp_path / "delta"
    code, stdout, stderr = _run(
        ["alpha", "--tracking-uri", store["uri"], "--out", str(out), "--reference", "delta"],
        capsys,
    )
    assert code == 0, stderr
    document = json.loads((out / "pareto.json").read_text())
    study = document["studies"][0]
    baseline = [[t[3], t[5]] for t in ALPHA if t[:3] == ("delta", "none", "FINISHED")]
    assert study["reference"] == baseline[0] == [0.916, 0.881]
    finished, _ = _expected(ALPHA)
    values = np.array([[t[3], t[5]] for t in finished])
    expected = _brute_hypervolume(values, ["max", "max"], np.array(baseline[0]))
    assert study["hypervolume"] == pytest.approx(expected, abs=1e-12)
    assert study["hypervolume"] == pytest.approx(0.001844, abs=1e-6)  # as docs/study.md says
    assert "at reference (0.916, 0.881) = delta / none" in stdout
    # The default origin: about 0.92 for the same study (the help and the docs say so).
    code, _, _ = _run(["alpha", "--tracking-uri", store["uri"], "--out", str(out)], capsys)
    study = json.loads((out / "pareto.json").read_text())["studies"][0]
    assert code == 0 and study["reference"] == [0.0, 0.0]
    assert study["hypervolume"] == pytest.approx(0.9227, abs=1e-4)


def test_reference_delta_needs_a_baseline_trial_in_every_study(store, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["alpha", "beta", "--tracking-uri", store["uri"], "--out", str(out), "--reference=delta"],
        capsys,
    )
    assert code == 2 and stdout == ""
    assert stderr.strip() == (
        "study pareto: error: reference: study 'beta' has no complete delta / none trial "
        "(unblurred, no augmentation) to measure from; give numbers or leave the default"
    )
    assert not out.exists()


def _collection_at(ax, x: float, y: float):
    """The scatter collection drawing the point (x, y)."""
    found = [c for c in ax.collections if any(np.allclose(o, (x, y)) for o in c.get_offsets())]
    assert len(found) == 1, (x, y, len(found))
    return found[0]


def test_plot_encodes_augmentation_filled_or_hollow(store):
    """Fig. 5's two panels in one plot: filled = no augmentation, hollow = augmented;
    the legend says so and stands outside the axes; front labels stay inside them."""
    from matplotlib.colors import to_rgba

    from study.pareto.store import load_study

    studies = [load_study(store["uri"], name) for name in ("alpha", "beta")]
    fig = plots.figure(studies)
    (ax,) = fig.axes
    hollow = filled = 0
    for trials in studies:
        for record in trials.records:
            x, y = record.objectives["test_acc"], record.objectives["test_consistency"]
            collection = _collection_at(ax, x, y)
            faces = collection.get_facecolors()
            if record.augment == "none":
                filled += 1
                assert len(faces) == 1 and np.allclose(
                    faces[0], to_rgba(encoding.family_color(record.family), faces[0][3])
                )
            else:
                hollow += 1
                assert len(faces) == 0, (record.filter, record.augment)  # facecolors 'none'
                edge = collection.get_edgecolors()[0]
                assert np.allclose(edge[:3], to_rgba(encoding.family_color(record.family))[:3])
    assert filled == 6 and hollow == 8
    # The two delta trials of alpha: same marker, told apart by the fill only.
    none, augmented = (
        _collection_at(ax, t[3], t[5]) for t in ALPHA if t[0] == "delta" and t[2] == "FINISHED"
    )
    assert len(none.get_facecolors()) == 1 and len(augmented.get_facecolors()) == 0
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert "no augmentation (filled)" in texts
    assert "augmented (hollow): flip, flip+crop" in texts
    assert any(t.startswith("alpha: front 5 of 11, HV 0.9227") for t in texts)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    assert legend.get_window_extent(renderer).x0 >= box.x1  # outside, right of the axes
    front_labels = [t for t in ax.texts if t.get_fontweight() == "bold"]
    assert len(front_labels) == 5 + 2
    for label in front_labels:
        extent = label.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, label.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, label.get_text()


def test_html_encodes_augmentation_with_open_symbols(store, tmp_path):
    from study.pareto.store import load_study

    trials = load_study(store["uri"], "alpha")
    html = plots.write_html([trials], tmp_path / "pareto.html").read_text()
    symbols = set(__import__("re").findall(r'"symbol":"([a-z-]+)"', html))
    # delta: star (none) and star-open (flip+crop); binomial-5 is only augmented
    assert {"star", "star-open", "pentagon-open", "pentagon"} <= symbols
    assert "alpha: Delta (baseline) (1 tap), augmented" in html
    assert "alpha: Delta (baseline) (1 tap), no augmentation" in html
    assert "filled: no augmentation" in html and "hollow: augmented" in html


def test_resume_status_and_pareto_pick_the_same_parent_of_a_name_used_twice(tmp_path):
    """Two parent runs of one study name (another experiment, or one made by hand): the
    service (``study resume``: the parent it logs to, the space it reads back) and the
    readers (``study status``, ``study pareto``, the API) follow one rule, so they name
    the same run: the newest in the experiment named after the study, else the newest."""
    import mlflow

    from study import mlflow_layout
    from study.pareto.store import ParetoError, find_parent
    from study.service import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    tags = {STUDY_TAG: "twice", ROLE_TAG: "parent"}
    own = client.create_run(client.create_experiment("twice"), start_time=1000, tags=tags)
    other = client.create_run(client.create_experiment("other"), start_time=2000, tags=tags)
    for run, marker in ((own, "own"), (other, "other")):
        client.log_dict(run.info.run_id, {"marker": marker}, mlflow_layout.STUDY_DOCUMENT)
    picked = {
        "readers": find_parent(client, "twice").info.run_id,
        "layout": mlflow_layout.parent_run(client, "twice").info.run_id,
        "resume": tracking.start_parent(uri, "twice", "twice", {}, tmp_path, {}),
    }
    assert set(picked.values()) == {own.info.run_id}, picked
    assert tracking.study_document(uri, "twice") == {"marker": "own"}
    # No experiment of that name: the newest parent anywhere, for every command alike.
    moved = tags | {STUDY_TAG: "moved"}
    client.create_run(client.create_experiment("third"), start_time=3000, tags=moved)
    newest = client.create_run(
        client.get_experiment_by_name("other").experiment_id,
        start_time=4000,
        tags=moved,
    )
    assert find_parent(client, "moved").info.run_id == newest.info.run_id
    assert mlflow_layout.parent_run(client, "moved").info.run_id == newest.info.run_id
    with pytest.raises(ParetoError, match="no study 'absent'; known: moved, twice"):
        find_parent(client, "absent")


def test_status_and_pareto_show_the_same_front(tmp_path):
    """`study status` and `study pareto` read one set of trials the same way: a complete
    trial whose objective is not finite (NaN) is on neither front, and status says so."""
    import io
    import math as m

    import mlflow

    from study.pareto.store import load_study
    from study.service.status import print_status

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("same")
    parent = client.create_run(experiment, tags={STUDY_TAG: "same", ROLE_TAG: "parent"})
    client.log_param(parent.info.run_id, "study.objectives", "test_acc:max,test_consistency:max")
    client.log_param(parent.info.run_id, "study.trials", "3")
    scores = {"a": (0.9, 0.8), "b": (0.8, 0.9), "nan": (m.nan, 0.99)}
    for i, (name, (acc, consistency)) in enumerate(scores.items()):
        tags = {PARENT_TAG: parent.info.run_id, ROLE_TAG: "trial", TRIAL_TAG: f"t{i}"}
        run = client.create_run(experiment, run_name=name, tags=tags)
        client.log_param(run.info.run_id, "model.filter", "delta")
        client.log_metric(run.info.run_id, "final.test_acc", acc)
        client.log_metric(run.info.run_id, "final.test_consistency", consistency)
        client.set_terminated(run.info.run_id, "FINISHED")
    out = io.StringIO()
    counts = print_status(uri, "same", out)
    assert counts["complete"] == 3
    shown = {line.rsplit("run ", 1)[1] for line in out.getvalue().splitlines() if "  run " in line}
    front = {record.run_id for record in load_study(uri, "same").front()}
    assert shown == front and len(front) == 2
    assert "1 complete trial(s) without a finite value of every objective" in out.getvalue()
