"""The trial's GPU options run here, on the CPU: ``train.compile``, ``train.bf16`` and
``train.channels_last``, each on alone, on a tiny config.

For each option: `study trial` completes and writes its metrics; a trial interrupted
after its first epoch and resumed from the checkpoint ends as the uninterrupted one; and
the option's forward and backward agree with eager float32 on the same network (the CPU
fast path of the blur included, which ``torch.compile`` traces as the convolution path:
:func:`study.layers.fastpath.applies`). Tolerances, stated once in :data:`TOLERANCE`:
``compile`` and ``channels_last`` reorder float32 sums only (1e-4 relative); ``bf16``
keeps 8 bits of mantissa in the autocast matmuls and convolutions (logits within 5 % of
their range, the loss within 2 %, each gradient's cosine with float32's above 0.9;
measured: 2.4 %, 0.03 %, 0.93-1.00).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from runs import TRIAL_TINY

from study import models
from study.trial.checkpoint import METRICS_FILE
from study.trial.documents import load_config
from study.trial.run import CHECKPOINT, run_trial

QUICK = Path(__file__).parents[1] / "search_spaces" / "quick.yaml"
# test_trial's tiny trial, smaller still, two epochs, no figures
SMALLER = "data.train_images=256 data.test_images=64 data.validation=64 train.epochs=2"
TINY = [*TRIAL_TINY, *SMALLER.split(), "train.batch_size=64", "eval.images=32", "eval.figures=none"]
OPTIONS = ("compile", "bf16", "channels_last")
#: (relative, absolute) tolerance on logits and gradients against eager float32.
TOLERANCE = {"compile": (1e-4, 1e-4), "channels_last": (1e-4, 1e-4), "bf16": (0.0, 0.05)}
#: What a final metric may differ by between a resumed and an uninterrupted run.
RESUMED = 1e-6
COMPARED = ("train_loss", "val_acc", "val_consistency", "test_acc", "test_consistency")


class Interrupted(Exception):
    """Raised by the report after the first epoch, as a killed process would stop."""


def _config(option: str):
    return load_config(QUICK, [*TINY, f"train.{option}=true"])[0]


def _stop_after_first_epoch(row: dict) -> None:
    if not row["done"] and row["epoch"] == 1:
        raise Interrupted


@pytest.mark.parametrize("option", OPTIONS)
def test_study_trial_completes_and_resumes_with(option, tmp_path):
    sets = [item for value in (*TINY, f"train.{option}=true") for item in ("--set", value)]
    whole = tmp_path / "whole"
    done = subprocess.run(
        [sys.executable, "-m", "study", "trial", str(QUICK), "--out", str(whole), *sets],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    straight = json.loads((whole / METRICS_FILE).read_text())
    assert straight["epochs"] == 2
    assert all(0 <= straight[key] <= 1 for key in COMPARED if key != "train_loss")

    resumed_out = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        run_trial(_config(option), resumed_out, report=_stop_after_first_epoch, progress=False)
    assert (resumed_out / CHECKPOINT).is_file() and not (resumed_out / METRICS_FILE).exists()
    resumed = run_trial(_config(option), resumed_out, progress=False)
    assert resumed["epochs"] == 2
    for key in COMPARED:
        assert resumed[key] == pytest.approx(straight[key], abs=RESUMED), key


def _network_and_batch():
    config = _config("compile")  # the network is the same whatever the option
    torch.manual_seed(0)
    model = models.build(**config.model.build_args(num_classes=10))
    # a trial's training batch (64 images of 32 x 32), so its compiled graph is reused
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(64) % 10
    return model, images, labels


def _forward_backward(model, images, labels, option: str | None):
    """Train-mode logits and the gradients of the cross-entropy, as a trial's step
    computes them with ``option`` on (``None``: eager float32)."""
    model = copy.deepcopy(model).train()
    forward = model
    if option == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        forward = model
    if option == "compile":
        forward = torch.compile(model)
    traced: list[bool] = []  # whether the network ran inside torch.compile's trace
    hook = model.register_forward_pre_hook(
        lambda module, args: traced.append(torch.compiler.is_compiling())
    )
    with torch.autocast("cpu", torch.bfloat16, enabled=option == "bf16"):
        logits = forward(images)
    hook.remove()
    assert traced == [option == "compile"], traced
    loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return logits.detach().float(), loss.item(), grads


@pytest.mark.parametrize("option", OPTIONS)
def test_the_option_computes_what_eager_float32_does(option):
    model, images, labels = _network_and_batch()
    logits, loss, grads = _forward_backward(model, images, labels, None)
    got_logits, got_loss, got_grads = _forward_backward(model, images, labels, option)
    rtol, atol = TOLERANCE[option]
    scale = logits.abs().max().item()
    assert scale > 0.1, "logits too small to compare against"
    if option == "bf16":
        assert (got_logits - logits).abs().max().item() <= atol * scale
        assert got_loss == pytest.approx(loss, rel=0.02)
        assert not torch.equal(got_logits, logits), "autocast changed nothing: not in bf16"
        for name, grad in grads.items():
            if grad.norm() > 1e-4:  # a bias before batch norm has none but rounding's
                cosine = F.cosine_similarity(grad.flatten(), got_grads[name].flatten(), dim=0)
                assert cosine > 0.9, f"{name}: gradient cosine {cosine:.3f}"
        return
    torch.testing.assert_close(got_logits, logits, rtol=rtol, atol=atol)
    assert got_loss == pytest.approx(loss, rel=rtol)
    for name, grad in grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=rtol, atol=atol, msg=name)
