"""Search spaces: the shipped files validate, conditional dimensions exist only when
their alternative is chosen, every sampler is seeded, and bad spaces fail up front
with one line naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import yaml

from study.service.samplers import sampler
from study.service.space import SAMPLERS, SearchSpace
from study.trial.config import ConfigError

SPACES = Path(__file__).parents[1] / "search_spaces"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def space_from(text: str) -> SearchSpace:
    return SearchSpace.parse(yaml.safe_load(text), default_name="test")


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_validate(path):
    space = SearchSpace.load(path)
    assert space.settings.name == path.stem
    if space.settings.sampler == "grid":
        assert space.grid_size() >= 2


def test_paper_table1_is_19_filters_by_2_augmentations():
    space = SearchSpace.load(SPACES / "paper-table1.yaml")
    grid = space.grid()
    assert len(grid["model.filter"]) == 19
    assert grid["augment.kind"] == ["none", "shift"]
    assert space.grid_size() == 38
    assert space.raw["model"]["name"] == "vgg13_bn"
    # The paper's protocol: circular shifts over all 32 x 32 positions, fp32.
    config = space.config(
        space.sample(optuna.trial.FixedTrial({"model.filter": "delta", "augment.kind": "shift"}))
    )
    assert config.augment.max_shift >= 16 and config.model.padding == "circular"
    assert not config.train.bf16 and not config.train.channels_last
    assert space.protocol_warning() is None  # a fixed grid may report on the test set


def test_adaptive_spaces_optimise_validation_metrics():
    space = SearchSpace.load(SPACES / "filter-design.yaml")
    assert list(space.settings.objectives) == ["val_acc", "val_consistency"]
    assert space.protocol_warning() is None
    assert space.raw["data"]["validation"] > 0


def test_an_adaptive_sampler_on_test_metrics_gets_one_warning_line():
    space = SearchSpace.load(SPACES / "smoke.yaml", ["study.sampler=tpe", "study.trials=4"])
    warning = space.protocol_warning()
    assert warning is not None and "\n" not in warning
    assert warning.startswith("the tpe sampler optimises test-set metrics")


def test_validation_objectives_need_a_validation_split():
    with pytest.raises(
        ConfigError, match=r"^study.objectives.val_acc: is measured on the validation"
    ):
        SearchSpace.load(
            SPACES / "smoke.yaml",
            ["study.objectives={val_acc: max, val_consistency: max}", "data.validation=0"],
        )


def test_conditional_dimensions_exist_only_for_the_chosen_family():
    space = SearchSpace.load(SPACES / "filter-design.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    families = set()
    for _ in range(40):
        trial = study.ask()
        config = space.config(space.sample(trial))  # every sample is a valid trial
        family = trial.params["model.filter"]
        families.add(family)
        own = {k for k in trial.params if k.startswith("model.filter[")}
        assert all(k.startswith(f"model.filter[{family}]") for k in own), (family, own)
        if family == "firwin":
            assert {"model.filter[firwin].cutoff", "model.filter[firwin].window"} <= own
            assert f"cutoff={trial.params['model.filter[firwin].cutoff']}" in config.model.filter
        if family == "firls":
            low = trial.params["model.filter[firls].bands.1"]
            assert low in [float(b) for b in _bands(config.model.filter)]
        study.tell(trial, 0.0)
    assert {"firwin", "firls", "learnable"} <= families


def _bands(canonical: str) -> list[str]:
    return canonical.split("bands=[")[1].split("]")[0].split(", ")


def test_document_round_trips():
    space = SearchSpace.load(SPACES / "smoke.yaml", ["study.trials=3", "train.epochs=1"])
    again = SearchSpace.parse(space.document())
    assert again.settings == space.settings
    assert again.raw == space.raw
    assert again.settings.name == "smoke"


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_is_seeded(name):
    text = """
study: {sampler: NAME, seed: 7, trials: 4}
model: {filter: {choice: [delta, binomial-3, binomial-5]}}
train: {lr: {loguniform: [0.01, 0.2]}}
""".replace("NAME", name)
    if name == "grid":
        text = text.replace("{loguniform: [0.01, 0.2]}", "{choice: [0.01, 0.1]}")
    space = space_from(text)

    def draws():
        study = optuna.create_study(sampler=sampler(space))
        out = []
        for _ in range(4):
            trial = study.ask()
            space.sample(trial)
            out.append(dict(trial.params))
            study.tell(trial, 1.0)
        return out

    assert draws() == draws()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("study: {sampler: anneal}", "study.sampler"),
        ("study: {trials: 0}", "study.trials"),
        ("study: {cpus: -1}", "study.cpus"),
        ("study: {cpus: 0, gpus: 0}", "study.cpus"),
        ("study: {objectives: {accuracy: max}}", "study.objectives.accuracy"),
        ("study: {objectives: {test_acc: up}}", "study.objectives.test_acc"),
        ("study: {name: 'a b'}", "study.name"),
        ("study: {colour: red}", "study.colour"),
        ("model: {filter: {choice: [delta, binomal-3]}}", "model.filter.family"),
        ("model: {filter: {choice: []}}", "model.filter"),
        ("model: {filter: {choice: [delta, delta]}}", "model.filter"),
        ("train: {lr: {uniform: [0.2, 0.1]}}", "train.lr"),
        ("train: {lr: {loguniform: [0, 0.1]}}", "train.lr"),
        ("train: {epochs: {int: [1.5, 3]}}", "train.epochs"),
        ("study: {sampler: grid}\ntrain: {lr: {uniform: [0.01, 0.1]}}", "study.sampler"),
        (
            "study: {sampler: grid}\nmodel: {filter: {choice: [{family: firwin, "
            "taps: 5, cutoff: {choice: [0.3, 0.5]}}]}}",
            "study.sampler",
        ),
        ("model: {filter: {family: firwin, taps: 5, cutoff: {uniform: [0.5, 1.5]}}}", "cutoff"),
    ],
)
def test_bad_spaces_name_the_field(text, field):
    with pytest.raises(ConfigError) as caught:
        space_from(text)
    message = str(caught.value)
    assert field in message.split(":")[0] or field in message, message
    assert "\n" not in message


def test_bad_space_files_exit_2_with_one_line(tmp_path):
    from study.cli import main

    cases = {
        "malformed.yaml": "study: {trials: [\n",
        "family.yaml": "model: {filter: {choice: [delta, gaussian-3]}}\n",
        "inconsistent.yaml": "study: {sampler: grid}\ntrain: {lr: {uniform: [0.01, 0.1]}}\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert main(["run", str(tmp_path / name)]) == 2, name
    assert not (tmp_path / "ray_results").exists()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.gpus=1", "study.gpus: a trial asks for 1 GPU but this machine has"),
        ("study.cpus=4096", "study.cpus: a trial asks for 4096 CPU"),
        ("study.tracking_uri=http://127.0.0.1:9", "study.tracking_uri: cannot reach"),
        ("study.storage_path=s3://bucket/x", "study.optuna_storage: storage_path s3://bucket/x"),
        ("data.source=no/such/data.tar.gz", "data.source: /"),
        ("data.source=.", "data.source: /"),
        (
            "study.scheduler={metrics: [test_acc, test_consistency]}",
            "study.scheduler.metrics.test_acc: is measured once, at the end of a trial",
        ),
    ],
)
def test_impossible_studies_exit_2_and_start_nothing(tmp_path, override, message):
    """Checked before Ray starts or MLflow is written: one line, exit code 2."""
    import subprocess
    import sys

    if override.startswith("study.gpus"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU, so one GPU per trial is possible")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "study", "run", str(SPACES / "smoke.yaml"), "--set", override],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking, "RAY_ADDRESS": ""},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "ray_results").exists()
    if (tmp_path / "mlflow.db").exists():  # the reachability check may create the store
        import mlflow

        assert not mlflow.MlflowClient(tracking).search_runs(["0"]), "no run was started"


def test_huge_grids_are_refused():
    text = "study: {sampler: grid}\nseed: {int: [0, 999]}\ntrain: {epochs: {int: [1, 200]}}"
    with pytest.raises(ConfigError, match=r"1000 x 200 = 200000 trials is over 100000"):
        space_from(text)


def test_relative_sqlite_and_journal_paths_become_absolute(tmp_path, monkeypatch):
    """Trials run in their own folders: a relative store would be another store there."""
    from study.paths import absolute_sqlite
    from study.service.plan import plan

    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite("sqlite:///runs/mlflow.db") == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert absolute_sqlite("sqlite:////abs/x.db?timeout=5") == "sqlite:////abs/x.db?timeout=5"
    assert absolute_sqlite("postgresql://h/db") == "postgresql://h/db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    space = SearchSpace.load(SPACES / "smoke.yaml", ["study.optuna_storage=o/journal.log"])
    resolved = plan(space, SPACES / "smoke.yaml", address="ray://unused:10001")
    assert resolved.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolved.optuna_storage == str(tmp_path / "o" / "journal.log")
    assert resolved.storage_path == str(tmp_path / "ray_results")


def test_relative_dataset_paths_become_absolute(tmp_path, monkeypatch):
    """Trials run in their own folders: a relative data.source must not name nothing
    there."""
    monkeypatch.chdir(tmp_path)
    space = SearchSpace.load(SPACES / "smoke.yaml", ["data.source=data/cifar.tar.gz"])
    assert space.raw["data"]["source"] == str(tmp_path / "data" / "cifar.tar.gz")
    space = SearchSpace.load(SPACES / "smoke.yaml", ["data.source={choice: [shapes, d.tgz]}"])
    assert space.raw["data"]["source"] == {"choice": ["shapes", str(tmp_path / "d.tgz")]}
    assert SearchSpace.load(SPACES / "smoke.yaml").raw["data"]["source"] == "shapes"


@pytest.mark.parametrize("name", ["smoke", "quick", "cifar10-cpu", "paper-table1"])
def test_a_space_is_read_and_validated_without_torch(name):
    """Parsing and validating a space (every alternative once) imports no torch, Ray or
    MLflow: a typo is reported in well under the seconds those take to import. (A space
    with content-aware downsampling builds its networks on the meta device to check
    that its groups divide every layer's channels: that one needs torch.)"""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from study.service.space import SearchSpace\n"
        f"SearchSpace.load({str(SPACES / f'{name}.yaml')!r})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'torchvision', 'ray', 'mlflow'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
