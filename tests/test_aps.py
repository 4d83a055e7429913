"""Adaptive polyphase sampling (Chaman & Dokmanic, CVPR 2021): exact consistency under
circular shifts, the operator's definition against an independent reference, norms and
ties, model and conversion wiring, and metrics that stay exact (APS models are
evaluated naively, never by fixed-phase polyphase expansion).
"""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from torch import nn

from study.convert import antialias, circular, convert_downsampling
from study.layers import (
    APS_NORMS,
    APSConv2d,
    APSPool2d,
    AvgAPSPool2d,
    MaxAPSPool2d,
    aps_downsample,
    create_aa,
    max_aps_pool2d,
)
from study.layers.aps import aps_phase, polyphase_components
from study.metrics import (
    PolyphaseError,
    input_dependent_layers,
    shift_probabilities,
    structural_blockers,
)
from study.metrics.scores import consistency_per_image
from study.models import build
from study.trial.config import ConfigError, from_mapping

SHIFTS = [(1, 0), (0, 1), (1, 1), (3, 5), (7, 2), (15, 15)]
FEW_SHIFTS = ((1, 0), (3, 5), (31, 2))  # full-width torchvision models: a few shifts


def _roll(x: torch.Tensor, dh: int, dw: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dh, dw), dims=(2, 3))


def _reference_aps(x: torch.Tensor, s: int, norm: str) -> torch.Tensor:
    """Per image: the component ``x[:, i::s, j::s]`` of largest norm, by a Python loop."""
    out = []
    for image in x:
        best, best_norm = None, None
        for i in range(s):
            for j in range(s):
                part = image[:, i::s, j::s]
                value = {"l2": part.norm(), "l1": part.abs().sum(), "linf": part.abs().max()}
                if best_norm is None or value[norm] > best_norm:
                    best, best_norm = part, value[norm]
        out.append(best)
    return torch.stack(out)


# --- the operator ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm", APS_NORMS)
def test_aps_matches_reference_and_follows_shifts(norm):
    """The largest-norm component, per image; a circular shift of the input gives the
    circularly shifted output (the selected component moves with the shift)."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    out = aps_downsample(x, 2, norm)
    torch.testing.assert_close(out, _reference_aps(x, 2, norm), rtol=0, atol=0)
    for dh, dw in SHIFTS[:5]:
        shifted = aps_downsample(_roll(x, dh, dw), 2, norm)
        # some circular shift of each image's output equals the shifted output
        for n in range(len(x)):
            assert any(
                torch.equal(_roll(out[n : n + 1], a, b), shifted[n : n + 1])
                for a in range(4)
                for b in range(4)
            )


def test_phase_is_per_image_and_imposable():
    """Each image picks its own phase; ``phase=`` imposes phases; ``return_phase``."""
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0] = 5.0  # phase (0, 0)
    x[1, 0, 1, 2] = 5.0  # phase (1, 0) -> index 2
    out, phase = aps_downsample(x, 2, return_phase=True)
    assert phase.tolist() == [0, 2]
    assert out[0, 0, 0, 0] == 5 and out[1, 0, 0, 1] == 5
    imposed = aps_downsample(x, 2, phase=torch.tensor([3, 3]))
    torch.testing.assert_close(imposed, x[:, :, 1::2, 1::2])


def test_ties_are_broken_shift_consistently():
    """Dense max-pooling copies the maximum into several phases, so ``linf`` ties; the
    tie-break by shift-invariant keys keeps the choice consistent at every shift, where
    "first maximum in phase order" would not be."""
    torch.manual_seed(1)
    x = torch.randn(3, 2, 8, 8)
    dense = max_aps_pool2d(x, torch.ones(1), norm="linf")
    components = polyphase_components(_dense_max(x), 2)
    maxima = components.flatten(2).abs().amax(-1)
    assert ((maxima == maxima.amax(1, keepdim=True)).sum(1) > 1).all()  # real ties
    for dh, dw in SHIFTS:
        shifted = max_aps_pool2d(_roll(x, dh, dw), torch.ones(1), norm="linf")
        assert _is_circular_shift(dense, shifted)
    # all-zero maps: every phase ties, the lowest index is taken, and the output is zero
    zero = torch.zeros(2, 3, 4, 4)
    assert aps_phase(polyphase_components(zero, 2)).tolist() == [0, 0]


def _dense_max(x):
    from study.layers.functional import max_blur_pool2d

    return max_blur_pool2d(x, torch.ones(1), 2, 1, "circular", "pool-blur", "ceil")


def _is_circular_shift(a: torch.Tensor, b: torch.Tensor) -> bool:
    height, width = a.shape[-2:]
    return all(
        any(
            torch.equal(_roll(a[n : n + 1], p, q), b[n : n + 1])
            for p in range(height)
            for q in range(width)
        )
        for n in range(len(a))
    )


def test_bad_norm_is_a_one_line_error():
    for make in (
        lambda: aps_downsample(torch.zeros(1, 1, 4, 4), 2, "l3"),
        lambda: APSPool2d(1, "delta", norm="l3"),
        lambda: MaxAPSPool2d(1, "delta", norm="max"),
        lambda: build("resnet20", width=0.125, downsample="aps", aps_norm="l3"),
        lambda: antialias(nn.Sequential(nn.MaxPool2d(2)), downsample="aps", aps_norm="l0"),
    ):
        with pytest.raises(ValueError, match=r"^aps_norm must be one of l2, l1, linf; got '") as e:
            make()
        assert "\n" not in str(e.value)
    with pytest.raises(
        ValueError, match=r"^downsample must be one of blur, aps, adaptive, ideal; got 'apx'$"
    ):
        build("vgg13_bn", width=0.125, downsample="apx")


def test_config_fields_are_validated():
    config = from_mapping({"model": {"downsample": "aps", "aps_norm": "l1", "filter": "rect-2"}})
    assert config.model.downsampling == "aps(norm=l1, filter=rect-2)"
    assert from_mapping({}).model.downsampling == "delta"  # default: blur, unchanged
    for key, value, allowed in [
        ("downsample", "APS", "blur, aps, adaptive, ideal"),
        ("aps_norm", "l3", "l2, l1, linf"),
    ]:
        with pytest.raises(ConfigError) as error:
            from_mapping({"model": {key: value}})
        assert str(error.value) == f"model.{key}: {value!r} is not allowed; allowed: {allowed}"


def test_layers_shapes_repr_and_registry():
    x = torch.randn(2, 4, 9, 8)
    assert APSPool2d(4, "binomial-3")(x).shape == (2, 4, 5, 4)  # ceil, as BlurPool2d
    assert MaxAPSPool2d(4, "delta")(x).shape == (2, 4, 4, 4)  # floor, as MaxPool2d(2)
    assert AvgAPSPool2d(4, "rect-2", norm="l1")(x).shape == (2, 4, 4, 4)
    assert APSPool2d(4, "delta")(torch.randn(2, 4, 1, 1)).shape == (2, 4, 1, 1)
    pool = create_aa("maxapspool", 4, "binomial-3", norm="linf")
    assert isinstance(pool, MaxAPSPool2d) and "norm=linf" in repr(pool)
    assert dict(pool.state_dict()) == {}  # no parameters, no persistent buffers


def test_aps_conv_matches_dense_conv_then_aps():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 5, 1, stride=2, padding_mode="circular")
    adaptive = APSConv2d.from_conv(conv, "delta", norm="l1")
    x = torch.randn(2, 3, 8, 8)
    expected = aps_downsample(nn.functional.conv2d(x, conv.weight, conv.bias), 2, "l1")
    torch.testing.assert_close(adaptive(x), expected)
    assert adaptive.weight is conv.weight


def test_follower_needs_its_leader_first():
    """A follower subsamples on its leader's phases of the same batch, and refuses to
    run before it."""
    leader, follower = APSPool2d(1, "delta"), APSPool2d(1, "delta")
    follower.follow(leader)
    with pytest.raises(RuntimeError, match="has not run on this batch"):
        follower(torch.randn(3, 1, 4, 4))
    torch.manual_seed(3)
    x, y = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    leader(x)
    _, phase = aps_downsample(x, 2, return_phase=True)
    assert leader.link.phase.tolist() == phase.tolist()
    torch.testing.assert_close(follower(y), aps_downsample(y, 2, phase=phase), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="has not run on this batch"):
        follower(torch.randn(2, 1, 4, 4))  # another batch size


# --- networks: consistency is exactly 1 -----------------------------------------------------


def _all_shift_outputs(
    model: nn.Module, x: torch.Tensor, shifts=tuple(SHIFTS)
) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        reference = model(x)
        shifted = torch.stack([model(_roll(x, dh, dw)) for dh, dw in shifts])
    return reference, shifted


@pytest.mark.parametrize(
    ("name", "norm", "filter"),
    [
        ("vgg13_bn", "l2", "delta"),
        ("vgg13_bn", "l1", "binomial-3"),
        ("vgg13_bn", "linf", "binomial-3"),
        ("resnet20", "l2", "binomial-3"),
        ("resnet20", "l1", "delta"),
        ("resnet20", "linf", "binomial-3"),
    ],
)
def test_aps_networks_are_exactly_shift_consistent(name, norm, filter):
    """Random weights, circular padding: the logits are the same at every circular shift
    (up to float rounding), so consistency is exactly 1."""
    torch.manual_seed(0)
    model = build(name, width=0.125, filter=filter, downsample="aps", aps_norm=norm)
    assert model.downsampling == f"aps(norm={norm}, filter={filter})"
    assert model.build_args["downsample"] == "aps" and model.build_args["aps_norm"] == norm
    x = torch.randn(4, 3, 16, 16)
    reference, shifted = _all_shift_outputs(model, x)
    assert reference.std() > 1e-3  # not a constant network
    assert (shifted - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()
    assert (shifted.argmax(-1) == reference.argmax(-1)).all()


def test_blur_network_is_not_exactly_consistent_and_default_is_unchanged():
    """The comparison above is not vacuous: the blur-pool network's logits move."""
    torch.manual_seed(0)
    model = build("resnet20", width=0.125, filter="binomial-3")
    assert model.downsampling == "binomial-3" and "downsample" not in model.build_args
    reference, shifted = _all_shift_outputs(model, torch.randn(4, 3, 16, 16))
    assert (shifted - reference).abs().max().item() > 1e-3 * reference.abs().max().item()


def test_resnet_shortcut_follows_the_main_branch():
    """Without the link the shortcut and main branch pick grids independently and the
    sum is no longer shift-consistent."""
    torch.manual_seed(0)
    model = build("resnet20", width=0.125, filter="delta", downsample="aps")
    block = model.layers[3]
    assert block.shortcut[0].follows is block.aa.link
    x = torch.randn(4, 3, 16, 16)
    for module in model.modules():
        if isinstance(module, APSPool2d):
            module.follows = None
    reference, shifted = _all_shift_outputs(model, x)
    assert (shifted - reference).abs().max().item() > 1e-4


def test_consistency_metric_is_one_and_polyphase_refuses(caplog):
    """All-shift consistency is exactly 1; ``method="polyphase"`` raises a clear error
    naming an APS layer; ``auto`` falls back to naive and logs why."""
    torch.manual_seed(0)
    model = build("vgg13_bn", width=0.125, filter="binomial-3", downsample="aps")
    with torch.no_grad():
        model.classifier.weight.mul_(100)  # spread the probabilities
    images = torch.randn(2, 3, 8, 8)
    assert input_dependent_layers(model)[0] == "features.6"
    assert structural_blockers(model)[0].startswith("features.6: adaptive polyphase")
    with pytest.raises(PolyphaseError, match=r"fixed-phase subsampling.*features\.6") as error:
        shift_probabilities(model, images, method="polyphase")
    assert "\n" not in str(error.value)
    with caplog.at_level(logging.INFO, logger="study.metrics"):
        auto = shift_probabilities(model, images, method="auto")
    assert "naive evaluation" in caplog.text and "APS" in caplog.text
    assert torch.equal(auto, shift_probabilities(model, images, method="naive"))
    assert consistency_per_image(auto).min().item() == 1.0
    spread = (auto - auto[:, :1, :1]).abs().max().item()
    assert spread < 1e-5


# --- conversions ----------------------------------------------------------------------------


@pytest.mark.parametrize("strided_conv", ["after-activation", "after-conv"])
def test_converted_resnet18_loads_state_dict_and_is_consistent(strided_conv):
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10)
    model = circular(torchvision.models.resnet18(num_classes=10), log=False)
    report = convert_downsampling(
        model, "binomial-3", strided_conv=strided_conv, downsample="aps", aps_norm="l1"
    )
    assert report.counts() == {"Conv2d": 7, "CircularMaxPool2d": 1}
    assert report.links == [(f"layer{i}.0.downsample.0", f"layer{i}.0.conv1") for i in (2, 3, 4)]
    assert "linked layer2.0.downsample.0" in str(report)
    model.load_state_dict(original.state_dict())  # strict: no new keys, none missing
    assert isinstance(model.maxpool, MaxAPSPool2d)
    assert isinstance(model.layer2[0].downsample[0], APSConv2d)
    reference, shifted = _all_shift_outputs(model, torch.randn(2, 3, 32, 32), FEW_SHIFTS)
    assert (shifted - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()


def test_converted_vgg_and_avgpool_modes():
    torch.manual_seed(0)
    original = torchvision.models.vgg11_bn(num_classes=10)
    model = antialias(
        circular(torchvision.models.vgg11_bn(num_classes=10), log=False),
        "delta",
        downsample="aps",
        aps_norm="linf",
        log=False,
    )
    model.load_state_dict(original.state_dict())
    assert sum(isinstance(m, MaxAPSPool2d) for m in model.modules()) == 5
    reference, shifted = _all_shift_outputs(model, torch.randn(1, 3, 32, 32), FEW_SHIFTS)
    assert (shifted - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()
    pools = nn.Sequential(nn.AvgPool2d(2), nn.AvgPool2d(2))
    antialias(pools, "rect-2", downsample="aps", log=False)
    assert all(isinstance(m, APSPool2d) for m in pools)
    dense = antialias(nn.Sequential(nn.AvgPool2d(2)), avgpool="dense", downsample="aps", log=False)
    assert isinstance(dense[0], AvgAPSPool2d)
