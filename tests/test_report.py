"""Checkpoints that rebuild their model, and ``study report`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from shared_data import require_cifar10_jpeg

from study import models
from study.cli import main
from study.layers import filter_parameters
from study.trial.checkpoint import METRICS_FILE, CheckpointError, load_checkpoint, save_checkpoint

FIGURES = {
    "variation_histogram.png",
    "shift_heatmap.png",
    "diagonal_curve.png",
    "adversarial_curve.png",
    "distance_grid.png",
    "tv_by_layer.png",
    "shift_families.png",
}


def study(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path / "vgg.pt", models.build("vgg11_bn", width=0.125, filter="binomial-3")
    )


def test_checkpoint_round_trip_with_learnable_taps(tmp_path):
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.25, filter="learnable(init=binomial-3)")
    with torch.no_grad():
        for _, parameter in filter_parameters(model):
            parameter.add_(0.05)
    path = save_checkpoint(tmp_path / "sub" / "r.pt", model, epoch=3)
    assert not list(tmp_path.glob("sub/*.partial"))
    loaded, payload = load_checkpoint(path)
    assert payload["epoch"] == 3 and payload["model"] == model.build_args
    assert not loaded.training
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_fixed_taps_are_not_stored(checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    assert not [key for key in payload["state_dict"] if "lowpass" in key]


def test_bad_checkpoints_say_why(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path / "none.pt")
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="is not a antialiased-study/checkpoint-1 file"):
        load_checkpoint(other)
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"]["width"] = 0.25
    torch.save(payload, other)
    with pytest.raises(CheckpointError, match="does not fit its model"):
        load_checkpoint(other)


def test_save_needs_a_built_model(tmp_path):
    with pytest.raises(CheckpointError, match="build_args"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))


def test_report_on_noise_writes_metrics_and_figures(tmp_path, checkpoint):
    out = tmp_path / "report"
    args = ["--images", "24", "--feature-images", "2", "--feature-shifts", "4", "--no-timing"]
    result = study("report", str(checkpoint), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert "consistency" in result.stdout
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["model"]["filter"] == "binomial-3"
    scores = metrics["metrics"]
    assert scores["images"] == 24 and scores["shifts"] == 1024
    assert scores["shift_method"] == "polyphase"
    assert scores["acc"] == 1.0  # noise is labelled by the model's unshifted prediction
    assert 0 < scores["consistency"] <= 1
    assert scores["consistency_circular"] == scores["consistency"]
    assert scores["acc_worst_crop"] <= scores["acc_mean_crop"] <= 1
    assert 0 < scores["consistency_subpixel"] <= 1
    assert {p.name for p in out.glob("*.png")} == FIGURES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "fast"], "--method: 'fast' is not one of auto, naive, polyphase"),
        (["--split", "val"], "--split: 'val' is not one of train, test"),
        (["--images", "-1"], "--images: -1 must be 0 (all) or a positive count"),
        (["--feature-images", "1"], "--feature-images: 1 must be 0 (skip) or >= 2"),
        (["--feature-shifts", "0"], "--feature-shifts: 0 is outside 1 to 512"),
        (["--device", "tpu"], "--device:"),
        (["--data", "/nonexistent/cifar"], "data: /nonexistent/cifar does not exist"),
    ],
)
def test_report_rejects_bad_input_in_one_line(tmp_path, checkpoint, args, message, capsys):
    """In-process for speed; the subprocess test below checks the real exit path."""
    out = tmp_path / "never"
    assert main(["report", str(checkpoint), "--out", str(out), *args]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("study: error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_report_rejects_a_file_that_is_no_checkpoint(tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    result = study("report", str(bogus), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "checkpoint:" in result.stderr and "Traceback" not in result.stderr


def test_report_on_real_cifar10(tmp_path, checkpoint):
    cifar = require_cifar10_jpeg()
    out = tmp_path / "report"
    args = ["--data", str(cifar), "--images", "40", "--feature-images", "0"]
    result = study("report", str(checkpoint), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert "40 test images" in metrics["data"]
    assert "timing_overhead" in metrics["metrics"]
    assert 0 <= metrics["metrics"]["acc"] <= 1
    assert "distance_grid.png" not in {p.name for p in out.glob("*.png")}
