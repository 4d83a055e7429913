"""The real-data study of docs/RESULTS.md: its space resolves to the paper's grid, and
one epoch of one of its trials runs on real CIFAR-10 where the data is at hand."""

from __future__ import annotations

from pathlib import Path

import optuna
from shared_data import require_cifar10_jpeg

from study.service.space import SearchSpace
from study.trial import run_trial

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "cifar10-cpu.yaml"
FILTERS = ["delta", "rect-2", "rect-3", "triangle-3", "binomial-3", "binomial-5", "binomial-7"]


def test_the_space_is_the_papers_filters_by_circular_shift_augmentation():
    space = SearchSpace.load(SPACE)
    assert space.grid() == {"model.filter": FILTERS, "augment.kind": ["none", "shift"]}
    assert space.grid_size() == 14
    config = space.config(
        space.sample(
            optuna.trial.FixedTrial({"model.filter": "binomial-5", "augment.kind": "shift"})
        )
    )
    assert (config.model.name, config.model.padding) == ("vgg13_bn", "circular")
    assert config.augment.max_shift == 16 and not config.train.bf16
    assert config.data.validation > 0 and config.eval.images >= 2000
    assert space.protocol_warning() is None  # a fixed grid: nothing chosen by the test set


def test_the_seed_study_is_two_configurations_by_two_more_seeds():
    space = SearchSpace.load(
        SPACE,
        [
            "model.filter={choice: [delta, binomial-5]}",
            "augment.kind=none",
            "seed={choice: [1, 2]}",
        ],
        name="cifar10-cpu-seeds",
    )
    assert space.grid_size() == 4 and space.settings.name == "cifar10-cpu-seeds"


def test_one_epoch_of_a_trial_on_real_cifar10(tmp_path):
    """Slow-ish (about a minute on 2 CPU cores); skipped, with its reason, where the
    JPEG copy of CIFAR-10 is absent."""
    data = require_cifar10_jpeg()
    space = SearchSpace.load(
        SPACE,
        [
            f"data.source={data}",
            "data.train_images=1500",
            "data.validation=300",
            "data.test_images=200",
            "train.epochs=1",
            "eval.images=100",
            "eval.feature_images=0",
            "eval.figures=none",
        ],
    )
    config = space.config(
        space.sample(
            optuna.trial.FixedTrial({"model.filter": "binomial-5", "augment.kind": "shift"})
        )
    )
    final = run_trial(config, tmp_path, progress=False)
    assert final["epochs"] == 1 and "1500 train, 300 validation, 200 test" in final["data"]
    assert final["test_acc"] > 0.15  # ten classes: chance is 0.10, one epoch learns a little
    assert 0 < final["test_consistency"] <= 1 and final["eval_shifts"] == 1024


SHIFT_SPACE = SPACE.parent / "downsampling-cifar10.yaml"


def test_the_shift_family_space_puts_seven_operators_under_three_families():
    """docs/RESULTS.md's shift-family run: every operator the issue names, with and
    without shift augmentation, each scored under the circular, crop and sub-pixel
    families at the literature's grids."""
    space = SearchSpace.load(SHIFT_SPACE)
    assert space.grid_size() == 14
    labels = set()
    for operator in range(7):
        for augment in ("none", "shift"):
            trial = optuna.trial.FixedTrial(
                {"model": f"option-{operator}", "augment.kind": augment}
            )
            config = space.config(space.sample(trial))
            labels.add(config.model.downsampling)
            assert config.eval.families == ("circular", "crop", "subpixel")
            assert (config.eval.crop_margin, config.eval.subpixel_steps) == (4, 4)
    assert labels == {
        "delta",
        "binomial-3",
        "binomial-5",
        "aps(norm=l2, filter=delta)",
        "aps(norm=l2, filter=binomial-3)",
        "ideal(cutoff=1/stride)",
        "adaptive(taps=3, groups=2)",
    }
