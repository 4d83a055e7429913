"""Probabilities at every circular shift (eq. 4): the polyphase evaluation must equal one
forward pass per shifted image on the paper's circular testbed (Section 4.1), and
``method="auto"`` must fall back to the naive passes whenever phases would not be exact.

The reference is always :func:`naive_shift_probabilities`-style evaluation through
``shift_probabilities(..., method="naive")``, or plain ``model(torch.roll(...))`` calls.
"""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from torch import nn

from study.metrics import PolyphaseError, shift_probabilities, structural_blockers
from study.models import build

TOLERANCE = 1e-4

# (name, width, image size): the smallest widths that keep every network's structure,
# DenseNet on 16x16 images (its 36 dense layers make 1024 naive shifts slow on a CPU).
MODELS = [
    ("vgg13_bn", 0.125, 32),
    ("densenet40_12", 0.1, 16),
    ("resnet20", 0.125, 32),
]
FILTERS = ["delta", "binomial-3"]


def _calibrate(model: nn.Module, images: torch.Tensor, spread: float = 1.5) -> nn.Module:
    """Rescale the final linear layer so the logits at shift (0, 0) have standard
    deviation ``spread``: random-init softmax is near uniform (VGG, ResNet) or saturated
    (DenseNet), and neither makes a probability comparison meaningful."""
    was_training = model.training
    with torch.no_grad():
        logits = model.eval()(images)
        scale = spread / logits.std().item()
        model.classifier.weight.mul_(scale)
        model.classifier.bias.mul_(scale)
    model.train(was_training)
    return model


def _model(name: str, width: float, size: int, filter: str, padding: str = "circular"):
    torch.manual_seed(0)
    model = build(name, width=width, filter=filter, padding=padding)
    images = torch.randn(2, 3, size, size)
    return _calibrate(model, images), images


@functools.cache
def _naive(name: str, width: float, size: int, filter: str) -> torch.Tensor:
    """Naive all-shift probabilities, computed once per configuration."""
    model, images = _model(name, width, size, filter)
    return shift_probabilities(model, images, method="naive")


def _roll(x: torch.Tensor, dh: int, dw: int) -> torch.Tensor:
    """Eq. (4), independently of :func:`study.metrics.shift`."""
    return torch.roll(x, shifts=(dh, dw), dims=(2, 3))


class PositionHead(nn.Module):
    """Two circular conv + 2x2 max-pool stages (two stride-2 subsamplings), then a linear
    head over the flattened map: position dependent, so not shift-invariant."""

    def __init__(self, size: int, classes: int = 5, global_pool: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        inputs = 4 if global_pool else 4 * (size // 4) ** 2
        pool = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        self.head = nn.Sequential(pool, nn.Flatten(), nn.Linear(inputs, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _position_net(global_pool: bool = False, size: int = 16):
    torch.manual_seed(1)
    model = PositionHead(size, global_pool=global_pool)
    return model, torch.randn(2, 3, size, size)


# --- the paper's networks -----------------------------------------------------------------


@pytest.mark.parametrize("filter", FILTERS)
@pytest.mark.parametrize(("name", "width", "size"), MODELS)
def test_polyphase_equals_naive_on_circular_models(name, width, size, filter):
    """Polyphase evaluation is exact on circularly padded networks, with and without
    blurred downsampling, and the comparison is not vacuous: the probabilities are
    neither saturated nor uniform, and they change with the shift."""
    model, images = _model(name, width, size, filter)
    assert structural_blockers(model) == []
    naive = _naive(name, width, size, filter)
    fast = shift_probabilities(model, images, method="polyphase")
    assert fast.shape == naive.shape == (2, size, size, 10)
    assert (fast - naive).abs().max().item() <= TOLERANCE
    assert (fast.log() - naive.log()).abs().max().item() <= 1e-3
    # Not degenerate: no 0/1 probabilities, not uniform.
    assert naive.min().item() > 1e-4 and naive.max().item() < 0.99
    assert naive.max().item() > 0.2
    # The probabilities depend on the shift by far more than the tolerance.
    spread = naive.amax(dim=(1, 2)) - naive.amin(dim=(1, 2))
    assert spread.max().item() > 20 * TOLERANCE


@pytest.mark.parametrize("method", ["naive", "polyphase", "auto"])
def test_shapes_and_rows_sum_to_one(method):
    """``(N, H, W, classes)`` float32 probabilities on the CPU, each row a distribution."""
    model, images = _model("vgg13_bn", 0.125, 32, "delta")
    if method == "naive":
        probs = _naive("vgg13_bn", 0.125, 32, "delta")
    else:
        probs = shift_probabilities(model, images, method=method)
    assert probs.shape == (2, 32, 32, 10)
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 32, 32), atol=1e-5, rtol=0)


def test_shift_zero_is_the_plain_forward_pass():
    """``probs[:, 0, 0]`` is the softmax of the unshifted images, and ``probs[:, dh, dw]``
    the softmax of the images rolled by ``(dh, dw)`` (eq. 4 sign convention)."""
    model, images = _model("resnet20", 0.125, 32, "binomial-3")
    probs = shift_probabilities(model, images, method="polyphase")
    model.eval()
    with torch.no_grad():
        for dh, dw in [(0, 0), (1, 0), (0, 3), (5, 30), (31, 17)]:
            expected = model(_roll(images, dh, dw)).softmax(1)
            torch.testing.assert_close(probs[:, dh, dw], expected, atol=TOLERANCE, rtol=0)
    # (1, 0) and (31, 0) are different shifts for this network.
    assert (probs[:, 1, 0] - probs[:, 31, 0]).abs().max().item() > 10 * TOLERANCE


@pytest.mark.parametrize("batch_size", [1, 2, 5, 1000])
def test_naive_batching_does_not_change_the_result(batch_size):
    """Shifted copies batched any way give the same probabilities (3 images, so some
    batch sizes split the images and some group several shifts per pass)."""
    model, _ = _position_net()
    images = torch.randn(3, 3, 16, 16)
    reference = shift_probabilities(model, images, method="polyphase")
    probs = shift_probabilities(model, images, method="naive", batch_size=batch_size)
    assert (probs - reference).abs().max().item() <= TOLERANCE


def test_polyphase_batching_does_not_change_the_result():
    """Polyphase in batches of one image equals one batch of all images."""
    torch.manual_seed(3)
    model = _calibrate(build("resnet20", width=0.125), torch.randn(2, 3, 32, 32))
    images = torch.randn(3, 3, 32, 32)
    whole = shift_probabilities(model, images, method="polyphase")
    single = shift_probabilities(model, images, method="polyphase", batch_size=1)
    torch.testing.assert_close(single, whole, atol=1e-6, rtol=0)


# --- method="auto" ------------------------------------------------------------------------


def test_auto_takes_polyphase_for_a_circular_model(caplog):
    """A circular model has no structural blocker, and auto returns exactly the
    polyphase result without logging a fallback."""
    model, images = _model("vgg13_bn", 0.125, 32, "binomial-3")
    assert structural_blockers(model) == []
    with caplog.at_level(logging.INFO, logger="study.metrics"):
        auto = shift_probabilities(model, images, method="auto")
    assert "naive evaluation" not in caplog.text
    assert torch.equal(auto, shift_probabilities(model, images, method="polyphase"))


def test_zero_padded_model_falls_back_to_naive(caplog):
    """Zero padding breaks shift commutation at the border: polyphase refuses with a
    :class:`PolyphaseError` (a ``ValueError``) naming the first offending layer, and auto
    evaluates naively."""
    model, images = _model("vgg13_bn", 0.125, 32, "delta", padding="zeros")
    blockers = structural_blockers(model)
    assert blockers and blockers[0].startswith("features.0:")
    with pytest.raises(PolyphaseError, match=r"features\.0") as error:
        shift_probabilities(model, images, method="polyphase")
    assert isinstance(error.value, ValueError)
    with caplog.at_level(logging.INFO, logger="study.metrics"):
        auto = shift_probabilities(model, images, method="auto")
    assert "naive evaluation" in caplog.text
    naive = shift_probabilities(model, images, method="naive")
    assert torch.equal(auto, naive)


def test_zero_padded_resnet_blur_is_reported():
    """A blur padding with zeros is a blocker too, named by its layer."""
    model = build("resnet20", width=0.125, filter="binomial-3", padding="zeros")
    blockers = structural_blockers(model)
    assert any(".aa:" in reason and "blur" in reason for reason in blockers)


def test_model_without_subsampling_falls_back_to_naive():
    """Nothing subsamples, so there are no phases: polyphase refuses and auto equals naive."""
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5),
    )
    images = torch.randn(2, 3, 8, 8)
    assert structural_blockers(model) == []
    with pytest.raises(PolyphaseError):
        shift_probabilities(model, images, method="polyphase")
    auto = shift_probabilities(model, images, method="auto")
    naive = shift_probabilities(model, images, method="naive")
    assert torch.equal(auto, naive)
    # The flattened head sees every shift differently.
    assert (naive - naive[:, :1, :1]).abs().max().item() > 10 * TOLERANCE


def test_non_divisible_size_falls_back_to_naive():
    """30x30 images reach a 15x15 map at ResNet-20's second strided conv: stride 2 does
    not divide it, so polyphase raises naming that layer, and auto evaluates naively."""
    torch.manual_seed(5)
    model = build("resnet20", width=0.125)
    images = torch.randn(1, 3, 30, 30)
    with pytest.raises(PolyphaseError, match=r"layers\.6\.conv1: stride"):
        shift_probabilities(model, images, method="polyphase")
    auto = shift_probabilities(model, images, method="auto")
    naive = shift_probabilities(model, images, method="naive")
    assert auto.shape == (1, 30, 30, 10)
    assert torch.equal(auto, naive)


# --- a position-dependent head (the exact-tail path) --------------------------------------


def test_two_subsamplings_commute_with_shifts_by_four():
    """With k=2 stride-2 subsamplings, a shift by 4q of the input is a shift by q of the
    final map (circular conv and pooling commute with shifts): shifts that are multiples
    of 4 reach the head as rolled feature maps, odd shifts do not."""
    model, images = _position_net()
    probs = shift_probabilities(model, images, method="naive")
    with torch.no_grad():
        features = model.features(images)
        for dh, dw in [(4, 0), (0, 8), (12, 4), (8, 8)]:
            expected = model.head(_roll(features, dh // 4, dw // 4)).softmax(1)
            torch.testing.assert_close(probs[:, dh, dw], expected, atol=1e-6, rtol=0)
    # The head is position dependent: a shift by 4 changes the output...
    assert (probs[:, 4, 0] - probs[:, 0, 0]).abs().max().item() > 10 * TOLERANCE
    # ...and a shift by a whole image does not.
    assert torch.equal(probs, shift_probabilities(model, _roll(images, 16, 16), method="naive"))


def test_two_subsamplings_with_global_pool_are_periodic_modulo_four():
    """With a global-pool head the same network is exactly invariant to shifts by
    multiples of 4 (2^k for k=2 subsamplings), but not to odd shifts."""
    model, images = _position_net(global_pool=True)
    probs = shift_probabilities(model, images, method="polyphase")
    for dh in range(0, 16, 4):
        for dw in range(0, 16, 4):
            torch.testing.assert_close(probs[:, dh, dw], probs[:, 0, 0], atol=1e-6, rtol=0)
    assert (probs[:, 1, 0] - probs[:, 0, 0]).abs().max().item() > 10 * TOLERANCE
    naive = shift_probabilities(model, images, method="naive")
    assert (probs - naive).abs().max().item() <= TOLERANCE


def test_polyphase_is_exact_for_a_position_dependent_head():
    """Polyphase expands every shift at the deepest subsampling when the head is not
    shift-invariant, so it equals naive evaluation at all 16x16 shifts."""
    model, images = _position_net()
    naive = shift_probabilities(model, images, method="naive")
    fast = shift_probabilities(model, images, method="polyphase")
    assert (fast - naive).abs().max().item() <= TOLERANCE
    auto = shift_probabilities(model, images, method="auto")
    assert (auto - naive).abs().max().item() <= TOLERANCE


# --- the model is left as it was ----------------------------------------------------------


@pytest.mark.parametrize("method", ["naive", "polyphase", "auto"])
def test_train_mode_is_restored_and_evaluation_is_in_eval_mode(method):
    """Evaluation runs in eval mode (batch norm uses its running statistics, which it
    does not update), and the model's mode and forward methods are restored after."""
    model, images = _model("resnet20", 0.125, 32, "binomial-3")
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    probs = shift_probabilities(model, images, method=method)
    assert model.training and all(m.training for m in model.modules())
    assert all("forward" not in vars(m) for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, stats[key]), key
    model.eval()
    with torch.no_grad():
        expected = model(images).softmax(1)
    torch.testing.assert_close(probs[:, 0, 0], expected, atol=TOLERANCE, rtol=0)
    # In train mode (batch statistics) the output would differ, so the check above bites.
    model.train()
    with torch.no_grad():
        batch_stats = model(images).softmax(1)
    assert (batch_stats - expected).abs().max().item() > 10 * TOLERANCE


def test_eval_mode_is_kept():
    """A model already in eval mode stays in eval mode."""
    model, images = _position_net(global_pool=True)
    model.eval()
    shift_probabilities(model, images, method="polyphase")
    assert not model.training and not any(m.training for m in model.modules())


# --- invalid arguments --------------------------------------------------------------------


def test_invalid_images_name_the_field():
    """Every method rejects images that are not a float ``(N, C, H, W)`` tensor with a
    ``ValueError`` whose message starts with ``images:``."""
    model, images = _position_net(global_pool=True)
    for method in ["naive", "polyphase", "auto"]:
        with pytest.raises(ValueError, match=r"^images:"):
            shift_probabilities(model, images[0], method=method)
        with pytest.raises(ValueError, match=r"^images:"):
            shift_probabilities(model, images.to(torch.uint8), method=method)
