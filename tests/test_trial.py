"""One trial end to end: training, per-epoch reports, the final metric set, figures,
checkpoints, resuming after a killed process, divergence, and `study trial`."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from runs import TRIAL_TINY

from study.data.dataset import load_dataset
from study.filters import design
from study.layers import blur_layers, filter_parameters
from study.trial.checkpoint import METRICS_FILE, load_checkpoint
from study.trial.config import ConfigError
from study.trial.documents import load_config
from study.trial.run import CHECKPOINT, TrialFailed, run_trial

QUICK = Path(__file__).parents[1] / "search_spaces" / "quick.yaml"


def tiny(*overrides: str):
    return load_config(QUICK, [*TRIAL_TINY, *overrides])[0]


def study(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600
    )


def test_trial_trains_reports_and_writes_everything(tmp_path):
    rows = []
    final = run_trial(tiny(), tmp_path, report=rows.append, progress=False)
    assert [row["done"] for row in rows] == [False, False, False, True]
    assert [row["epoch"] for row in rows[:3]] == [1, 2, 3]
    for row in rows[:3]:
        assert {"train_loss", "val_acc", "val_acc_shift", "val_consistency"} <= set(row)
        assert row["val_loss"] > 0  # mean cross-entropy in nats
        assert not any(key.startswith("test_") for key in row), "the test set is for the end"
        assert row["images_per_second"] > 0 and row["epoch_seconds"] > 0
    assert rows[0]["train_loss"] > rows[2]["train_loss"]
    assert final["test_acc"] > 0.2  # chance is 0.1
    assert 0 < final["test_consistency"] <= 1
    assert {name: final[name] for name in ("val_acc", "val_consistency", "val_loss")} == {
        name: rows[2][name] for name in ("val_acc", "val_consistency", "val_loss")
    }
    assert final["eval_images"] == 64 and final["eval_shifts"] == 1024
    assert final["eval_method"] == "polyphase"
    written = json.loads((tmp_path / METRICS_FILE).read_text())
    assert written["test_acc"] == final["test_acc"]
    assert "adversarial_accuracy" in written["details"]
    assert len(json.loads((tmp_path / "history.json").read_text())) == 3
    figures = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert {"training", "shift_heatmap", "distance_grid", "adversarial_curve"} <= figures
    _, payload = load_checkpoint(tmp_path / CHECKPOINT)
    assert payload["epoch"] == 3 and payload["config"] == tiny().to_dict()
    assert payload["data"]["mean"] != [0.4914, 0.4822, 0.4465]  # measured on the data


def test_resume_after_the_process_is_killed_ends_identically(tmp_path):
    """Kill -9 a running `study trial` after its first checkpoint, run it again on the
    same folder, and compare with an uninterrupted run (equal to 1e-6 on the CPU)."""
    args = [*TRIAL_TINY, "train.epochs=4", "data.train_images=1536"]
    sets = [item for pair in (("--set", a) for a in args) for item in pair]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "study", "trial", str(QUICK), "--out", str(killed), *sets],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (killed / CHECKPOINT).exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epoch = torch.load(killed / CHECKPOINT, weights_only=True)["epoch"]
    assert epoch < 4, "the trial finished before it could be killed: make it longer"
    assert not (killed / METRICS_FILE).exists()
    resumed = study("trial", str(QUICK), "--out", str(killed), *sets)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    straight = study("trial", str(QUICK), "--out", str(whole), *sets)
    assert straight.returncode == 0, straight.stderr
    a = json.loads((killed / METRICS_FILE).read_text())
    b = json.loads((whole / METRICS_FILE).read_text())
    for key in ("test_acc", "test_consistency", "test_variation", "train_loss", "val_consistency"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    first = torch.load(killed / CHECKPOINT, weights_only=True)["state_dict"]
    second = torch.load(whole / CHECKPOINT, weights_only=True)["state_dict"]
    for name, tensor in first.items():
        assert torch.allclose(tensor.float(), second[name].float(), atol=1e-6), name


def test_without_a_validation_split_epochs_report_no_accuracy(tmp_path):
    rows = []
    final = run_trial(
        tiny("data.validation=0", "train.epochs=1"), None, report=rows.append, progress=False
    )
    assert not any(key.startswith(("val_", "test_")) for key in rows[0])
    assert "val_acc" not in final and 0 < final["test_consistency"] <= 1


def test_exact_validation_consistency_is_the_all_shift_consistency(tmp_path):
    """``eval.val_method: exact`` scores every circular shift of the validation images:
    the reported value equals :func:`consistency` recomputed from the checkpoint."""
    from study.data import to_float
    from study.metrics import consistency, shift_probabilities

    config = tiny("train.epochs=1", "eval.val_method=exact", "eval.val_images=24")
    final = run_trial(config, tmp_path, progress=False)
    model, payload = load_checkpoint(tmp_path / CHECKPOINT)
    data = load_dataset("shapes", 768, 128, seed=0, validation=96)
    images = to_float(
        data.val_images[:24], tuple(payload["data"]["mean"]), tuple(payload["data"]["std"])
    )
    probs = shift_probabilities(model.eval(), images)
    assert final["val_consistency"] == pytest.approx(consistency(probs), abs=1e-9)
    # the loss of the unshifted images, from the same probabilities
    labels = data.val_labels[:24]
    picked = probs[:, 0, 0].gather(1, labels.view(-1, 1))
    assert final["val_loss"] == pytest.approx(-picked.log().mean().item(), rel=1e-5)


@pytest.mark.parametrize(
    ("figures", "expected"),
    [("essential", {"training", "shift_heatmap", "shift_families"}), ("none", set())],
)
def test_figures_can_be_cut_to_the_essential_or_none(tmp_path, figures, expected):
    final = run_trial(tiny("train.epochs=1", f"eval.figures={figures}"), tmp_path, progress=False)
    assert {p.stem for p in (tmp_path / "figures").glob("*.png")} == expected
    assert final["figures_seconds"] >= 0 and final["setup_seconds"] > 0


def test_a_trial_uses_the_threads_it_is_given(tmp_path):
    before = torch.get_num_threads()
    try:
        final = run_trial(tiny("train.epochs=1"), None, progress=False, threads=1)
        assert final["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_resume_refuses_a_folder_of_another_config(tmp_path):
    run_trial(tiny("train.epochs=1"), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"^out: .* holds a trial with another config"):
        run_trial(tiny("train.epochs=1", "train.lr=0.01"), tmp_path, progress=False)


def test_divergence_fails_the_trial_with_its_reason():
    """A non-finite loss ends the trial as failed, naming epoch and step (here forced by
    a zero standard deviation, which turns every input into inf and NaN)."""
    data = load_dataset("shapes", 128, 32, seed=0)
    broken = dataclasses.replace(data, std=(0.0, 0.0, 0.0))
    with pytest.raises(TrialFailed, match=r"^diverged: loss nan at epoch 1, step 0$"):
        run_trial(tiny("train.epochs=2"), None, progress=False, dataset=broken)


def test_learnable_filters_train_and_keep_unit_dc_gain(tmp_path):
    """Learnable taps move with training, in their own optimiser group, and
    every blur keeps DC gain 1 and symmetry."""
    config = tiny(
        "model.filter=learnable(init=binomial-3)", "train.epochs=1", "train.filter_lr=0.5"
    )
    run_trial(config, tmp_path, progress=False)
    model, _ = load_checkpoint(tmp_path / CHECKPOINT)
    initial = torch.tensor(design("binomial-3"), dtype=torch.float32)
    taps = [module.lowpass().detach() for _, module in blur_layers(model)]
    assert taps and any((t - initial).abs().max() > 1e-4 for t in taps)
    for t in taps:
        assert t.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(t, t.flip(0), atol=1e-6)
    assert len(list(filter_parameters(model))) == len(taps)


def test_dataset_can_be_given_directly(tmp_path):
    data = load_dataset("shapes", 256, 64, seed=0)
    final = run_trial(tiny("train.epochs=1"), None, progress=False, dataset=data)
    assert final["epochs"] == 1 and "256 train" in final["data"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr=fast"], "train.lr: expected a number, got 'fast'"),
        (["--set", "model.filter={choice: [delta]}"], "model.filter: is a search dimension"),
        (["--set", "data.source=/nonexistent"], "data.source: /nonexistent does not exist"),
        (["--set", "nonsense"], "--set: 'nonsense' must look like key=value"),
    ],
)
def test_trial_command_rejects_bad_input_in_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    result = study("trial", str(QUICK), "--out", str(out), *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("study: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_trial_command_names_a_missing_config(tmp_path):
    result = study("trial", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out"))
    assert (
        result.returncode == 2
        and "config: " in result.stderr
        and "is not a file" in (result.stderr)
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_trial_command_refuses_an_empty_config(tmp_path, text):
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    out = tmp_path / "out"
    result = study("trial", str(empty), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"study: error: config: {empty} is empty (or only comments); it must hold a YAML mapping"
    )
    assert not out.exists()
