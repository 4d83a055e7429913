"""The one config schema: defaults, YAML files, --set overrides, and a one-line error
naming the field for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.trial.config import ConfigError, TrialConfig, from_mapping
from study.trial.documents import apply_override, load_config, read_yaml

QUICK = Path(__file__).parents[1] / "search_spaces" / "quick.yaml"


def test_defaults_follow_the_paper():
    """Section 4.1: SGD momentum 0.9, batch 128, lr 0.1, decay at 100 and 150 epochs."""
    config = from_mapping({})
    assert config == TrialConfig()
    train = config.train
    assert (train.momentum, train.batch_size, train.lr) == (0.9, 128, 0.1)
    assert (train.schedule, train.milestones, train.epochs) == ("step", (100, 150), 200)


def test_quick_file_loads_and_round_trips():
    config, _ = load_config(QUICK)
    assert config.model.name == "vgg11_bn" and config.model.filter == "binomial-5"
    assert from_mapping(config.to_dict()) == config
    assert config.flat()["train.lr"] == 0.05


def test_overrides_are_yaml_values_at_dotted_paths():
    config, raw = load_config(
        QUICK,
        [
            "train.lr=0.02",
            "train.milestones=[2, 3]",
            "model.filter={family: firwin, taps: 5, cutoff: 0.4}",
            "data.train_images=null",
            "augment.kind=flip+shift",
        ],
    )
    assert config.train.lr == 0.02 and config.train.milestones == (2, 3)
    assert config.model.filter == "firwin(taps=5, cutoff=0.4, window=hamming)"
    assert config.data.train_images is None
    assert config.augment.kind == "flip+shift"
    assert raw["train"]["lr"] == 0.02


def test_study_section_is_left_for_the_study_service():
    config = from_mapping({"study": {"objectives": ["test_acc"]}, "seed": 3})
    assert config.seed == 3
    with pytest.raises(ConfigError, match=r"^study: expected a mapping"):
        from_mapping({"study": 5})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=0", r"^train\.lr: 0\.0 is outside \(0, 100\]$"),
        ("train.lrr=0.1", r"^train\.lrr: unknown key; did you mean 'lr'\?; allowed: epochs"),
        ("train.epochs=2.5", r"^train\.epochs: expected a whole number, got 2\.5$"),
        ("train.nesterov=yes please", r"^train\.nesterov: expected true or false"),
        ("train.milestones=[5, 2]", r"^train\.milestones: \[5, 2\] must be increasing"),
        ("train.milestones=3", r"^train\.milestones: expected a list of whole numbers"),
        ("train.schedule=linear", r"^train\.schedule: 'linear' is not allowed; allowed: step"),
        ("model.name=vgg99", r"^model\.name: 'vgg99' is not allowed; allowed: densenet40_12"),
        ("model.filter=binomal-5", r"^model\.filter\.family: unknown family 'binomal'"),
        ("model.filter={family: firwin, taps: 5, cutoff: 2}", r"^model\.filter\.cutoff: 2"),
        ("model.width=0", r"^model\.width: 0\.0 is outside \(0, 16\]$"),
        ("model.padding=mirror", r"^model\.padding: 'mirror' is not allowed"),
        ("augment.kind=rotate", r"^augment\.kind: 'rotate' is not allowed; allowed: none"),
        ("augment.max_shift=-1", r"^augment\.max_shift: -1 is outside \[0, 64\]$"),
        ("eval.method=fast", r"^eval\.method: 'fast' is not allowed"),
        ("eval.feature_images=1", r"^eval\.feature_images: 1 is not allowed"),
        ("data.train_images=0", r"^data\.train_images: 0 is outside"),
        ("device=tpu", r"^device: 'tpu'; allowed: auto, cpu, cuda, cuda:N$"),
        ("seed=-1", r"^seed: -1 is outside"),
        ("train=3", r"^train: expected a mapping, got int$"),
        ("model.filter={choice: [delta, binomial-5]}", r"^model\.filter: is a search dimension"),
        ("train.lr={loguniform: [0.01, 0.1]}", r"^train\.lr: is a search dimension \(loguniform\)"),
        ("nothing", r"^--set: 'nothing' must look like key=value"),
        ("=3", r"^--set: '=3' must look like key=value"),
        ("train.lr=[unclosed", r"^--set train\.lr: '\[unclosed' is not a YAML value$"),
        ("seed.deep=1", r"^--set seed\.deep: seed is not a section$"),
    ],
)
def test_bad_values_name_their_field(override, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, ["seed=0", override] if override.startswith("seed.") else [override])
    assert "\n" not in str(caught.value)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: .* is not a file; give a YAML file$"):
        read_yaml(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  name: [vgg\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        read_yaml(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping, not list"):
        read_yaml(listing)
    for text in ("", "# nothing but a comment\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        with pytest.raises(ConfigError, match=r"^config: .* is empty \(or only comments\)"):
            load_config(empty)
    assert load_config(None)[0] == TrialConfig()  # no file at all: the defaults


def test_override_creates_missing_sections():
    raw: dict = {}
    apply_override(raw, "train.lr=0.3")
    assert raw == {"train": {"lr": 0.3}}
