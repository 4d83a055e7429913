"""The ideal low-pass (Michaeli et al., CVPR 2023) and the content-aware filter (Zou et
al., BMVC 2020) as downsampling operators: their definitions against independent
references, gradients, models and conversions (state dicts still load), configs with
one-line errors, and metrics that stay exact (ideal networks by phases, content-aware
ones naively).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from study.convert import antialias, circular, convert_downsampling
from study.layers import (
    AdaptiveBlurConv2d,
    AdaptiveBlurPool2d,
    AvgAdaptiveBlurPool2d,
    AvgIdealPool2d,
    Downsampling,
    IdealConv2d,
    IdealPool2d,
    MaxAdaptiveBlurPool2d,
    MaxIdealPool2d,
    downsampling_label,
    ideal_lowpass2d,
)
from study.metrics import (
    PolyphaseError,
    input_dependent_layers,
    shift_probabilities,
    structural_blockers,
)
from study.metrics.probabilities import shift_probabilities_by
from study.models import build
from study.trial.config import ConfigError, from_mapping
from study.trial.simulated import final_metrics

OPERATORS = [
    {"downsample": "ideal", "ideal_cutoff": 0.5},
    {"downsample": "adaptive", "adaptive_taps": 3, "adaptive_groups": 2},
]


# --- the ideal low-pass ---------------------------------------------------------------------


def _numpy_ideal(x: np.ndarray, cutoff: float, on_edge: float = 0.0) -> np.ndarray:
    """The brick wall by its definition, with numpy's full 2-D FFT: bins strictly below
    ``cutoff / 2`` cycles per pixel pass, bins on it pass at ``on_edge`` (0: alias-free
    convnets' ``create_lpf_rect``), per axis."""

    def axis(n: int) -> np.ndarray:
        f = np.abs(np.fft.fftfreq(n))
        return np.where(np.isclose(f, cutoff / 2), on_edge, (f < cutoff / 2).astype(float))

    mask = np.outer(axis(x.shape[-2]), axis(x.shape[-1]))
    return np.real(np.fft.ifft2(np.fft.fft2(x) * mask))


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (1, 6), (2, 2)])
@pytest.mark.parametrize("cutoff", [0.5, 0.25, 0.3, 1.0])
@pytest.mark.parametrize("edge", ["zero", "half"])
def test_ideal_lowpass_matches_its_definition(size, cutoff, edge):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    on_edge = {"zero": 0.0, "half": 0.5}[edge]
    expected = x.numpy() if cutoff == 1 else _numpy_ideal(x.numpy(), cutoff, on_edge)
    np.testing.assert_allclose(ideal_lowpass2d(x, cutoff, edge).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("size", [4, 6, 7, 8, 15, 16])
def test_ideal_pool_at_its_default_matches_numpy_with_the_edge_bin_dropped(size):
    """The default pool (cutoff ``1/stride``, edge bin 0) is numpy's brick wall at 1/2,
    subsampled, for even and odd sizes, on both axes."""
    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64)
    expected = _numpy_ideal(x.numpy(), 0.5)[..., ::2, ::2]
    np.testing.assert_allclose(IdealPool2d(3)(x).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("size", [4, 6, 8, 16])
@pytest.mark.parametrize("stride", [2, (1, 2)])
def test_ideal_pool_does_not_alias_shifts_by_the_stride_commute_every_phase_same_energy(
    size, stride
):
    """With the edge bin at 0 nothing above the subsampled map's band is left: shifting
    the input by a multiple of the stride shifts the output exactly, and the energy of
    the subsampled map is the same at every subsampling phase (Parseval, no alias). With
    the edge bin at 1/2 the Nyquist component survives and the phases' energies differ."""
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    s_h, s_w = (stride, stride) if isinstance(stride, int) else stride
    pool = IdealPool2d(3, stride=stride)
    out = pool(x)
    for k_h in range(0, size, s_h):
        for k_w in range(0, size, s_w):
            moved = pool(x.roll((k_h, k_w), (-2, -1)))
            assert torch.allclose(moved, out.roll((k_h // s_h, k_w // s_w), (-2, -1)), atol=1e-6)

    def phase_energies(layer: IdealPool2d) -> torch.Tensor:
        return torch.stack(
            [
                layer(x.roll((p_h, p_w), (-2, -1))).pow(2).sum()
                for p_h in range(s_h)
                for p_w in range(s_w)
            ]
        )

    energies = phase_energies(pool)
    assert (energies.max() - energies.min()).item() < 1e-6 * energies.max().item()
    half = phase_energies(IdealPool2d(3, stride=stride, edge="half"))
    spread = (half.max() - half.min()).item() / half.max().item()
    if size % (2 * s_w) == 0:  # a bin sits on the cutoff: at 1/2 it aliases
        assert spread > 1e-3
    else:  # no bin on the cutoff: the edge weight changes nothing
        assert spread < 1e-6


def test_ideal_layers_default_cutoff_is_one_over_their_stride():
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    assert torch.equal(IdealPool2d(2, stride=4)(x), IdealPool2d(2, 0.25, stride=4)(x))
    assert IdealPool2d(2, stride=(1, 2)).cutoffs == (1.0, 0.5)
    assert "cutoff=1/stride" in repr(IdealPool2d(2)) and "edge=half" in repr(
        IdealPool2d(2, edge="half")
    )


def test_ideal_keeps_constants_and_the_band_and_removes_the_rest():
    rows = torch.arange(16.0)
    low = torch.cos(2 * torch.pi * 2 * rows / 16)  # 0.125 cycles/px: inside cutoff 0.5
    high = torch.cos(2 * torch.pi * 6 * rows / 16)  # 0.375 cycles/px: outside
    image = (3 + low + high).expand(1, 2, 16, 16).contiguous()
    filtered = ideal_lowpass2d(image, 0.5)
    assert torch.allclose(filtered, (3 + low).expand(1, 2, 16, 16), atol=1e-5)
    constant = torch.full((2, 4, 9, 9), 2.5)
    for layer in (IdealPool2d(4), MaxIdealPool2d(4), AvgIdealPool2d(4)):
        out = layer(constant)
        assert torch.allclose(out, torch.full_like(out, 2.5), atol=1e-5), type(layer).__name__
    assert IdealPool2d(4)(constant).shape == (2, 4, 5, 5)  # ceil, as BlurPool2d
    assert MaxIdealPool2d(4)(constant).shape == (2, 4, 4, 4)  # floor, as MaxPool2d(2, 2)


def test_ideal_pool_is_max_pool_then_filter_then_subsample_and_has_gradients():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    pool = MaxIdealPool2d(3, cutoff=0.5)
    dense = F.max_pool2d(torch.roll(F.pad(x, (0, 1, 0, 1), mode="circular"), 0), 2, 1)
    expected = ideal_lowpass2d(dense, 0.5)[..., ::2, ::2]
    assert torch.allclose(pool(x), expected, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: IdealPool2d(3, 0.3)(t), (x,))
    plain = torch.randn(1, 2, 6, 6)
    assert torch.equal(IdealPool2d(2, cutoff=1.0)(plain), plain[..., ::2, ::2])


def test_ideal_conv_shares_weights_and_is_conv_then_filter():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular")
    ideal = IdealConv2d.from_conv(conv, cutoff=0.5)
    assert ideal.weight is conv.weight and ideal.bias is conv.bias
    x = torch.randn(2, 3, 8, 8)
    dense = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.weight, conv.bias)
    assert torch.allclose(ideal(x), ideal_lowpass2d(dense, 0.5)[..., ::2, ::2], atol=1e-5)


# --- the content-aware filter ---------------------------------------------------------------


def _reference_pasa(x, conv_weight, norm, taps, groups, stride):
    """Zou et al.'s ``Downsample_PASA_group_softmax``: predict kernels at every pixel,
    filter every pixel, then subsample (circular padding here). The published code takes
    one softmax over all groups' taps together; the paper's per-group kernels (and the
    layer here) take it per group, so each kernel has DC gain 1. With one group they
    agree."""
    pad = taps // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="circular")
    n, c, h, w = x.shape
    logits = norm(F.conv2d(padded, conv_weight))  # (n, g*k*k, h, w)
    sigma = logits.view(n, groups, taps * taps, h, w).softmax(2).view_as(logits)
    sigma = sigma.reshape(n, 1, groups * taps * taps, h * w)
    cols = F.unfold(padded, taps).reshape(n, c, taps * taps, h * w)
    cols = cols.permute(1, 0, 2, 3).reshape(groups, c // groups, n, taps * taps, h * w)
    cols = cols.permute(2, 0, 1, 3, 4)
    sigma = sigma.permute(2, 0, 1, 3).reshape(groups, taps * taps, n, 1, h * w)
    sigma = sigma.permute(2, 0, 3, 1, 4)
    out = (cols * sigma).sum(3).reshape(n, c, h, w)
    return out[..., ::stride, ::stride]


@pytest.mark.parametrize(("taps", "groups"), [(3, 2), (5, 4), (3, 1)])
def test_content_aware_filter_matches_the_reference_and_kernels_sum_to_one(taps, groups):
    torch.manual_seed(0)
    layer = AdaptiveBlurPool2d(8, taps=taps, groups=groups).eval()
    with torch.no_grad():
        layer.predictor.norm.running_mean.normal_()
        layer.predictor.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 8, 10, 10)
    kernels = layer.predictor(x)
    assert kernels.shape == (3, groups, taps * taps, 5, 5)
    assert (kernels >= 0).all()
    assert torch.allclose(kernels.sum(2), torch.ones(3, groups, 5, 5), atol=1e-6)
    # the reference predicts at every pixel (stride-1 conv); ours only where it samples
    expected = _reference_pasa(
        x, layer.predictor.conv.weight, layer.predictor.norm, taps, groups, 2
    )
    assert torch.allclose(layer(x), expected, atol=1e-5)
    constant = torch.full((2, 8, 6, 6), -1.5)
    assert torch.allclose(layer(constant), torch.full((2, 8, 3, 3), -1.5), atol=1e-5)


def test_content_aware_forms_shapes_gradients_and_lazy_channels():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    layer = MaxAdaptiveBlurPool2d(4, taps=3, groups=2).double()
    assert layer(x).shape == (2, 4, 4, 4)
    assert torch.autograd.gradcheck(layer, (x,))
    assert AvgAdaptiveBlurPool2d(4)(x.float().detach()).shape == (2, 4, 4, 4)
    lazy = AdaptiveBlurPool2d(None, taps=3, groups=2)
    assert lazy(torch.randn(2, 6, 8, 8)).shape == (2, 6, 4, 4)
    assert lazy.predictor.conv.weight.shape == (18, 6, 3, 3)
    with pytest.raises(ValueError, match=r"^groups: 4 does not divide the 6 channels"):
        AdaptiveBlurPool2d(None, groups=4)(torch.randn(1, 6, 4, 4))
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    made = AdaptiveBlurConv2d.from_conv(conv, taps=5, kernel_groups=4)
    assert made.weight is conv.weight and made(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Downsampling("adaptive", taps=4), r"^adaptive_taps: expected an odd whole"),
        (lambda: Downsampling("adaptive", groups=0), r"^adaptive_groups: expected a whole"),
        (lambda: Downsampling("ideal", cutoff=0), r"^ideal_cutoff: expected a number in \(0, 1\]"),
        (lambda: Downsampling("ideal", "binomial-3"), r"^filter: ideal downsampling has its own"),
        (lambda: Downsampling("blurr"), r"^downsample must be one of blur, aps, adaptive, ideal"),
        (lambda: AdaptiveBlurPool2d(6, groups=4), r"^groups: 4 does not divide the 6 channels"),
        (lambda: IdealPool2d(1, cutoff=float("nan")), r"^cutoff: expected a number in \(0, 1\]"),
    ],
)
def test_bad_operator_arguments_are_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


# --- models, conversions, configs ------------------------------------------------------------


@pytest.mark.parametrize("fields", OPERATORS, ids=lambda f: f["downsample"])
@pytest.mark.parametrize("name", ["vgg13_bn", "resnet20", "densenet40_12"])
def test_models_build_and_their_state_dicts_round_trip(name, fields):
    torch.manual_seed(0)
    model = build(name, width=0.25, **fields).eval()
    assert model.downsampling == str(Downsampling(fields["downsample"], **_own(fields)))
    assert model.build_args["downsample"] == fields["downsample"]
    kinds = (IdealPool2d, MaxIdealPool2d, AvgIdealPool2d)
    if fields["downsample"] == "adaptive":
        kinds = (AdaptiveBlurPool2d, MaxAdaptiveBlurPool2d, AvgAdaptiveBlurPool2d)
    assert any(isinstance(m, kinds) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    again = build(**model.build_args).eval()
    again.load_state_dict(model.state_dict())  # strict
    assert torch.equal(again(x), model(x))


def _own(fields: dict) -> dict:
    names = {
        "ideal_cutoff": "cutoff",
        "ideal_edge": "edge",
        "adaptive_taps": "taps",
        "adaptive_groups": "groups",
    }
    return {names[k]: v for k, v in fields.items() if k in names}


@pytest.mark.parametrize("fields", OPERATORS, ids=lambda f: f["downsample"])
def test_converted_torchvision_models_load_their_state_dicts(fields):
    """The original keys load into the converted model; only the content-aware
    predictors are new (and nothing is left unexpected)."""
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10)
    model = torchvision.models.resnet18(num_classes=10)
    report = convert_downsampling(model, "delta", **fields)
    assert report.counts() == {"Conv2d": 7, "MaxPool2d": 1}
    model(torch.randn(2, 3, 32, 32))  # lazy predictors take their sizes
    result = model.load_state_dict(original.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(".predictor." in key for key in result.missing_keys)
    assert bool(result.missing_keys) == (fields["downsample"] == "adaptive")
    assert type(model.maxpool).__name__.startswith(("MaxIdeal", "MaxAdaptive"))
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    vgg = antialias(torchvision.models.vgg11(num_classes=10), "delta", log=False, **fields)
    assert sum(type(m).__name__.startswith("Max") for m in vgg.modules()) == 5
    assert "cutoff=0.5" in str(report) or "taps=3, groups=2" in str(report)


def test_config_fields_labels_and_simulated_metrics():
    config = from_mapping({"model": {"downsample": "ideal", "ideal_cutoff": 0.25}})
    assert config.model.downsampling == "ideal(cutoff=0.25)"
    for model, field in [
        ({"downsample": "adaptive", "filter": "binomial-3"}, "model.filter"),
        ({"downsample": "adaptive", "adaptive_taps": 4}, "model.adaptive_taps"),
        ({"downsample": "ideal", "ideal_cutoff": 2}, "model.ideal_cutoff"),
        ({"downsample": "ideal", "ideal_edge": "one"}, "model.ideal_edge"),
        ({"downsample": "adaptive", "adaptive_groups": 3, "width": 0.125}, "model.adaptive_groups"),
    ]:
        with pytest.raises(ConfigError) as error:
            from_mapping({"model": model})
        assert str(error.value).startswith(f"{field}: ") and "\n" not in str(error.value)
    assert from_mapping({"model": {"downsample": "ideal"}}).model.downsampling == (
        "ideal(cutoff=1/stride)"
    )
    params = {"downsample": "adaptive", "adaptive_taps": "5", "adaptive_groups": "4"}
    assert downsampling_label("delta", params) == "adaptive(taps=5, groups=4)"
    assert downsampling_label("binomial-3", {"downsample": "aps"}) == "aps(binomial-3)"
    blur = final_metrics(from_mapping({"model": {"filter": "binomial-3"}}))
    ideal = final_metrics(from_mapping({"model": {"downsample": "ideal"}}))
    wide = final_metrics(from_mapping({"model": {"downsample": "ideal", "ideal_cutoff": 1.0}}))
    assert ideal["test_consistency"] > wide["test_consistency"]
    assert ideal["test_consistency"] > blur["test_consistency"]


# --- metrics ---------------------------------------------------------------------------------


def test_ideal_networks_are_evaluated_by_phases_exactly():
    torch.manual_seed(0)
    model = build("resnet20", width=0.25, downsample="ideal", ideal_cutoff=0.5)
    with torch.no_grad():
        model.classifier.weight.mul_(50)
    images = torch.randn(2, 3, 16, 16)
    assert not structural_blockers(model) and not input_dependent_layers(model)
    fast, method = shift_probabilities_by(model, images, "auto")
    assert method == "polyphase"
    naive = shift_probabilities(model, images, method="naive")
    assert (fast - naive).abs().max().item() < 1e-5


def test_content_aware_networks_fall_back_to_naive_and_polyphase_refuses(caplog):
    torch.manual_seed(0)
    model = build("vgg13_bn", width=0.125, downsample="adaptive")
    images = torch.randn(2, 3, 8, 8)
    assert input_dependent_layers(model)[0] == "features.6"
    with pytest.raises(PolyphaseError, match=r"features\.6.*predicted kernels") as error:
        shift_probabilities(model, images, method="polyphase")
    assert "\n" not in str(error.value)
    with caplog.at_level(logging.INFO, logger="study.metrics"):
        probs, method = shift_probabilities_by(model, images, "auto")
    assert method == "naive" and "naive evaluation" in caplog.text
    assert torch.equal(probs, shift_probabilities(model, images, method="naive"))


@pytest.mark.parametrize("fields", OPERATORS, ids=lambda f: f["downsample"])
def test_circular_conversion_reaches_the_new_layers(fields):
    model = antialias(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2)),
        "delta",
        "reflect",
        log=False,
        **fields,
    )
    circular(model, log=False)
    assert model[1].padding == "circular"


def test_surgery_keeps_the_models_dtype_and_lazy_predictors_start_as_eager_ones():
    torch.manual_seed(0)
    model = antialias(
        torchvision.models.resnet18(num_classes=10).double(), "delta", downsample="adaptive",
        log=False,
    )  # fmt: skip
    assert model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
    lazy, eager = MaxAdaptiveBlurPool2d(None), MaxAdaptiveBlurPool2d(64)
    lazy(torch.randn(2, 64, 8, 8))
    expected = (2 / (18 * 9)) ** 0.5  # Kaiming normal, fan-out: 18 outputs x 3 x 3
    for layer in (lazy, eager):
        assert abs(layer.predictor.conv.weight.std().item() - expected) < 0.15 * expected


def test_ideal_pools_padding_other_than_circular_are_not_evaluated_by_phases():
    model = nn.Sequential(MaxIdealPool2d(2, padding="zeros"), nn.Flatten())
    assert structural_blockers(model) == ["0: dense pool pads with zeros, not circular"]
    assert not structural_blockers(nn.Sequential(MaxIdealPool2d(2), nn.Flatten()))


def test_antialias_takes_a_whole_downsampling_as_the_flat_arguments_make_it():
    """One ``Downsampling`` value, passed whole, converts a model as its fields given one
    by one do; given both ways at once, it is refused in one line."""
    import pytest
    import torchvision

    from study.layers import Downsampling

    whole = antialias(torchvision.models.resnet18(), Downsampling("aps", "binomial-3"), log=False)
    flat = antialias(torchvision.models.resnet18(), "binomial-3", downsample="aps", log=False)
    kinds = [(n, type(m).__name__) for n, m in whole.named_modules()]
    assert kinds == [(n, type(m).__name__) for n, m in flat.named_modules()]
    assert any(kind == "APSPool2d" for _, kind in kinds)
    with pytest.raises(ValueError, match=r"^downsample: given beside a whole Downsampling"):
        antialias(torchvision.models.resnet18(), Downsampling("aps"), downsample="ideal")
