"""Per-layer feature distance maps (Fig. 4), filter TV (Fig. 7), timing (Table 2),
the full metric set and its figures."""

from __future__ import annotations

import json

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from study import models
from study.layers.modules import CircularMaxPool2d
from study.metrics import (
    evaluate,
    feature_distance_maps,
    forward_overhead,
    normalized_tv,
    probed_layers,
    summary,
    total_variation,
)
from study.metrics import figures as figs

ATOL = 1e-5


def invariant_net() -> nn.Module:
    """Circular convolutions and a global average pool: exactly shift-invariant."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )


def two_pool_net() -> nn.Module:
    """Two circular stride-2 max-pools: exactly modulo-2 then modulo-4 equivariant."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )


def images(count: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_invariant_model_has_zero_distance_at_every_layer_and_shift():
    """Section 4.2: a circular-conv, global-pool net is equivariant at every layer
    (eq. 1) and invariant (eq. 2) from the global pool on."""
    result = feature_distance_maps(invariant_net(), images())
    assert result["layers"] == ["pixels", "0", "2", "3", "5", "softmax"]
    assert result["equivariance"].shape == (6, 16, 16)
    assert result["equivariance"].abs().max() < ATOL
    globals_ = [result["layers"].index(name) for name in ("3", "5", "softmax")]
    assert result["invariance"][globals_].abs().max() < ATOL
    # and the feature maps themselves do move under a shift: invariance is not trivial
    assert result["invariance"][1, 1, 1] > 0.01


def test_subsampling_layers_show_the_modulo_n_pattern():
    """Fig. 4: after k stride-2 subsamplings equivariance holds exactly for shifts that
    are multiples of 2^k, and fails at other shifts."""
    result = feature_distance_maps(two_pool_net(), images(size=16), max_shift=8)
    layers, maps = result["layers"], result["equivariance"]
    assert "2 (dense)" in layers and "2 (ds)" in layers and "5 (ds)" in layers
    assert maps[layers.index("2 (dense)")].abs().max() < ATOL  # dense max-pool: equivariant
    for name, modulo in (("2 (ds)", 2), ("3", 2), ("5 (ds)", 4)):
        grid = maps[layers.index(name)]
        on = grid[::modulo, ::modulo]
        off = grid[1::modulo, :]
        assert on.abs().max() < ATOL, name
        assert off.min() > 1e-3, name
    assert result["resolution"][layers.index("5 (ds)")] == (4, 4)


def test_blur_improves_equivariance_of_the_last_layers():
    """Fig. 4 (b): with a blur before each subsampling, the softmax is more invariant."""
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    means = {}
    for spec in ("delta", "binomial-5"):
        torch.manual_seed(0)
        model = models.build("vgg11_bn", width=0.125, filter=spec)
        means[spec] = feature_distance_maps(model, x, max_shift=4)["equivariance"][-2].mean()
    assert means["binomial-5"] < 0.5 * means["delta"]


def test_probed_layers_split_and_name_vgg_pools():
    model = models.build("vgg11_bn", width=0.125, filter="binomial-3")
    names = probed_layers(model)
    assert names[0] == "features.0" and names[-1] == "classifier"
    result = feature_distance_maps(model, images(2, 32), max_shift=1)
    assert sum(label.endswith("(dense)") for label in result["layers"]) == 5
    assert sum(label.endswith("(ds)") for label in result["layers"]) == 5


def test_a_module_run_twice_is_recorded_twice():
    relu = nn.ReLU()
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        relu,
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"),
        relu,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    result = feature_distance_maps(model, images(), max_shift=2, layers=["1"])
    assert result["layers"] == ["pixels", "1", "1#2", "softmax"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_shift": 0}, "max_shift"),
        ({"max_shift": 17}, "max_shift"),
        ({"layers": ["nope"]}, "layers"),
    ],
)
def test_feature_maps_reject_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        feature_distance_maps(invariant_net(), images(), **kwargs)


def test_feature_maps_need_two_images():
    with pytest.raises(ValueError, match="images"):
        feature_distance_maps(invariant_net(), images(1))


def test_normalized_tv_matches_ruderman_definition():
    """Fig. 7 / Ruderman et al.: sum of absolute neighbour differences over the L1 norm."""
    weight = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [3.0, 0.0, 1.0]])
    vertical = 1 + 1 + 1 + 3 + 1 + 0
    horizontal = 1 + 2 + 1 + 0 + 3 + 1
    assert normalized_tv(weight).item() == pytest.approx((vertical + horizontal) / 9)
    assert normalized_tv(torch.ones(2, 3, 5, 5)).eq(0).all()
    assert torch.isnan(normalized_tv(torch.zeros(3, 3)))


def test_total_variation_skips_1x1_and_orders_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 5))
    with torch.no_grad():
        model[2].weight.fill_(1.0)
    tv = total_variation(model)
    assert list(tv) == ["0", "2"]
    assert tv["2"] == 0.0 and tv["0"] > 0


def test_forward_overhead_reports_both_times():
    torch.manual_seed(0)
    baseline = models.build("vgg11_bn", width=0.125)
    blurred = models.build("vgg11_bn", width=0.125, filter="binomial-7")
    result = forward_overhead(blurred, baseline, torch.randn(4, 3, 32, 32), rounds=3, warmup=1)
    assert set(result) == {"model_ms", "baseline_ms", "overhead"}
    assert result["model_ms"] > 0 and result["baseline_ms"] > 0
    assert result["overhead"] == pytest.approx(result["model_ms"] / result["baseline_ms"] - 1)
    assert baseline.training and blurred.training  # modes restored


def test_evaluate_returns_the_full_metric_set_and_json_summary():
    torch.manual_seed(0)
    model = models.build("vgg11_bn", width=0.125, filter="binomial-3")
    x = torch.randn(6, 3, 32, 32)
    labels = torch.randint(0, 10, (6,))
    result = evaluate(model, x, labels, feature_images=2, feature_max_shift=2)
    assert result["shift_method"] == "polyphase"
    assert result["images"] == 6 and result["shifts"] == 1024
    assert result["accuracy_heatmap"].shape == (32, 32)
    assert result["adversarial_accuracy"][0] == pytest.approx(result["acc"])
    assert result["consistency"] == pytest.approx(result["consistency_per_image"].mean().item())
    assert "timing_overhead" not in result
    text = json.dumps(summary(result))
    loaded = json.loads(text)
    assert len(loaded["adversarial_accuracy"]) == 17
    assert len(loaded["feature_distance"]["equivariance_mean"]) == len(
        result["feature_distance"]["layers"]
    )
    assert "variation_per_image" not in loaded


def test_evaluate_rejects_one_feature_image():
    with pytest.raises(ValueError, match="feature_images"):
        evaluate(invariant_net(), images(), torch.zeros(3, dtype=torch.long), feature_images=1)


def test_every_figure_is_drawn_from_evaluate_results():
    x, labels = images(4), torch.tensor([0, 1, 2, 3])
    results = {
        name: evaluate(model, x, labels, feature_images=2, feature_max_shift=2)
        for name, model in (("invariant", invariant_net()), ("pooled", two_pool_net()))
    }
    drawn = figs.report_figures(results)
    assert set(drawn) == {
        "variation_histogram",
        "shift_heatmap",
        "diagonal_curve",
        "adversarial_curve",
        "distance_grid",
        "tv_by_layer",
        "shift_families",
    }
    for figure in drawn.values():
        assert isinstance(figure, Figure)
    assert len(drawn["shift_heatmap"].axes) == 3  # two panels and a colour bar
    lines = drawn["adversarial_curve"].axes[0].lines
    assert [line.get_label() for line in lines] == ["invariant", "pooled"]


def test_figures_reject_empty_input_and_unknown_kind():
    with pytest.raises(ValueError, match="curves"):
        figs.adversarial_curve({})
    with pytest.raises(ValueError, match="kind"):
        figs.distance_grid({"a": {"layers": []}}, kind="sideways")


def test_circular_pool_model_is_probed_too():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        CircularMaxPool2d(3, 2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    result = feature_distance_maps(model, images(), max_shift=4)
    layers = result["layers"]
    assert result["equivariance"][layers.index("1 (dense)")].abs().max() < ATOL
    assert result["equivariance"][layers.index("1 (ds)")][::2, ::2].abs().max() < ATOL
