"""Model surgery on torchvision networks: every strided layer blurred, shapes and
state dicts unchanged, idempotence, exclusions, and circular padding."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision
from torch import nn

from study.convert import (
    NothingConvertedWarning,
    antialias,
    circular,
    convert_downsampling,
)
from study.filters import FilterSpecError
from study.layers import BLUR_TYPES, BlurConv2d, BlurPool2d, MaxBlurPool2d


def _strided(model: nn.Module) -> dict[str, str]:
    """Name -> type of every Conv2d / MaxPool2d / AvgPool2d with a stride > 1."""
    out = {}
    for name, module in model.named_modules():
        if type(module) in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d):
            stride = module.stride
            stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
            if max(stride) > 1:
                out[name] = type(module).__name__
    return out


def _counts(kinds: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in kinds.values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _blurred(module: nn.Module) -> bool:
    return isinstance(module, (*BLUR_TYPES, BlurConv2d))


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def vgg13_bn() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.vgg13_bn().eval()
    # non-trivial batch-norm statistics, so eval mode is not the identity
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("model_name", ["resnet18", "vgg13_bn"])
def test_every_strided_layer_is_replaced(model_name, request):
    original = request.getfixturevalue(model_name)
    model = copy.deepcopy(original)
    strided = _strided(original)
    expected_counts = {"resnet18": {"Conv2d": 7, "MaxPool2d": 1}, "vgg13_bn": {"MaxPool2d": 5}}
    assert _counts(strided) == expected_counts[model_name]  # the networks as we know them

    report = convert_downsampling(model, "binomial-5")
    assert report.counts() == _counts(strided)
    assert {change.name for change in report.replaced} == set(strided)
    modules = dict(model.named_modules())
    for name in strided:
        assert _blurred(modules[name]), f"{name} was not replaced: {modules[name]}"
        assert str(
            (modules[name].blur if isinstance(modules[name], BlurConv2d) else modules[name]).spec
        ) == ("binomial-5")
    assert _strided(model) == {}, "strided layers left after conversion"
    # torchvision convs pad with zeros, so the blurs default to reflect
    assert {m.padding for _, m in model.named_modules() if isinstance(m, BLUR_TYPES)} == {"reflect"}
    assert str(report).startswith(f"replaced {len(strided)} layers")

    # the original weights load strictly, and the keys are the same
    assert set(model.state_dict()) == set(original.state_dict())
    model.load_state_dict(original.state_dict(), strict=True)


@pytest.mark.parametrize("model_name", ["resnet18", "vgg13_bn"])
def test_output_shapes_unchanged(model_name, request):
    original = request.getfixturevalue(model_name)
    model = antialias(copy.deepcopy(original), "binomial-5", log=False).eval()
    sizes = (224, 97) if model_name == "vgg13_bn" else (224, 97, 225)
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(1, 3, size, size)
            assert model(x).shape == original(x).shape == (1, 1000)
            # and the feature maps, before any adaptive pooling
            features_new = _features(model, x, model_name)
            features_old = _features(original, x, model_name)
            assert features_new.shape == features_old.shape, size


def _features(model: nn.Module, x: torch.Tensor, model_name: str) -> torch.Tensor:
    if model_name == "vgg13_bn":
        return model.features(x)
    body = nn.Sequential(*list(model.children())[:-2])
    return body(x)


def test_resnet_feature_sizes_at_odd_inputs(resnet18):
    original = copy.deepcopy(resnet18)
    model = antialias(copy.deepcopy(resnet18), "triangle-3", log=False)
    probes = {}
    for name in ("conv1", "maxpool", "layer2", "layer3", "layer4"):
        for net, key in ((model, "new"), (original, "old")):
            net.get_submodule(name).register_forward_hook(
                lambda _m, _i, out, name=name, key=key: probes.update({(name, key): out.shape})
            )
    with torch.no_grad():
        x = torch.randn(1, 3, 97, 97)
        model(x)
        original(x)
    for name in ("conv1", "maxpool", "layer2", "layer3", "layer4"):
        assert probes[(name, "new")] == probes[(name, "old")], name


def test_delta_vgg_computes_the_same_function(vgg13_bn):
    """MaxPool2d(2, 2) = Downsample_2(MaxPool_{2,1}) (Section 3.2): with the delta filter
    the converted network is the original one."""
    model = antialias(copy.deepcopy(vgg13_bn), "delta", log=False).eval()
    assert sum(isinstance(m, MaxBlurPool2d) for m in model.modules()) == 5
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    with torch.no_grad():
        for size in (64, 97):
            x = torch.randn(2, 3, size, size)
            torch.testing.assert_close(model(x), vgg13_bn(x), rtol=0, atol=1e-6)
            torch.testing.assert_close(model.features(x), vgg13_bn.features(x), rtol=0, atol=1e-6)


def test_delta_resnet_computes_the_same_function(resnet18):
    """Convs with the delta filter are dense conv + subsampling = the strided conv."""
    model = antialias(copy.deepcopy(resnet18), "delta", padding="zeros", log=False).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(model(x), resnet18(x), rtol=1e-5, atol=1e-5)


def test_keep_stem_leaves_resnet_conv1(resnet18):
    model = copy.deepcopy(resnet18)
    report = convert_downsampling(model, "binomial-3", keep_stem=True)
    assert type(model.conv1) is nn.Conv2d and model.conv1.stride == (2, 2)
    assert "conv1" not in {change.name for change in report.replaced}
    assert ("conv1", "stem convolution (keep_stem=True)") in report.skipped
    assert report.counts() == {"Conv2d": 6, "MaxPool2d": 1}
    assert set(_strided(model)) == {"conv1"}


def test_exclude_patterns(resnet18):
    model = copy.deepcopy(resnet18)
    report = convert_downsampling(model, "binomial-3", exclude=["*.downsample.*", "maxpool"])
    assert set(_strided(model)) == {
        "maxpool",
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
        "layer4.0.downsample.0",
    }
    assert report.counts() == {"Conv2d": 4}
    assert all(
        why == "excluded by pattern" for name, why in report.skipped if name in _strided(model)
    )


def test_converting_twice_replaces_nothing(resnet18):
    model = antialias(copy.deepcopy(resnet18), "binomial-5", log=False)
    snapshot = {name: type(m) for name, m in model.named_modules()}
    with pytest.warns(NothingConvertedWarning):
        report = convert_downsampling(model, "binomial-7")
        antialias(model, "binomial-7", log=False)
    assert report.replaced == []
    assert {name: type(m) for name, m in model.named_modules()} == snapshot
    # still binomial-5 everywhere
    specs = {str(m.spec) for m in model.modules() if isinstance(m, BLUR_TYPES)}
    assert specs == {"binomial-5"}


def test_first_conversion_does_not_warn(resnet18):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NothingConvertedWarning)
        antialias(copy.deepcopy(resnet18), "binomial-5", log=False)


def test_model_without_downsampling_warns():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 1, 1))
    with pytest.warns(NothingConvertedWarning, match="replaced nothing"):
        antialias(model, "binomial-5", log=False)
    assert type(model[0]) is nn.Conv2d and type(model[2]) is nn.MaxPool2d


def test_avgpool_replace_and_dense():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.AvgPool2d(2))
    replaced = antialias(copy.deepcopy(model), "rect-2", log=False)
    assert type(replaced[1]) is BlurPool2d
    x = torch.randn(1, 2, 8, 8)
    # Appendix E.1: rect-2 + subsampling is the 2x2 average pool it replaces
    torch.testing.assert_close(replaced(x), model(x), rtol=0, atol=1e-6)
    dense = antialias(copy.deepcopy(model), "binomial-3", avgpool="dense", log=False)
    assert type(dense[1]).__name__ == "BlurAvgPool2d"
    assert dense(x).shape == model(x).shape


def test_bad_arguments():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2))
    with pytest.raises(FilterSpecError):
        antialias(model, "binomial-0", log=False)
    with pytest.raises(ValueError, match="padding"):
        antialias(model, "binomial-3", padding="wrap", log=False)
    with pytest.raises(ValueError, match="avgpool"):
        antialias(model, "binomial-3", avgpool="other", log=False)


# --- circular ------------------------------------------------------------------------------


def test_circular_after_antialias(resnet18):
    model = antialias(copy.deepcopy(resnet18), "binomial-5", log=False)
    circular(model, log=False)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.padding_mode == "circular" for m in convs)
    blurs = [m for m in model.modules() if isinstance(m, BLUR_TYPES)]
    assert len(blurs) == 8
    assert all(m.padding == "circular" for m in blurs)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert model(x).shape == (1, 1000)


def test_antialias_picks_circular_blurs_for_a_circular_model():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 1, stride=2),
    )
    circular(model, log=False)
    assert all(m.padding_mode == "circular" for m in model.modules() if isinstance(m, nn.Conv2d))
    antialias(model, "binomial-5", log=False)
    blurs = [m for m in model.modules() if isinstance(m, BLUR_TYPES)]
    assert len(blurs) == 3 and all(b.padding == "circular" for b in blurs)
    # the whole model is now equivariant to shifts by its total stride (8)
    model = model.double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    y = model(x)
    torch.testing.assert_close(
        model(x.roll((8, 16), (2, 3))), y.roll((1, 2), (2, 3)), rtol=0, atol=1e-12
    )


def test_circular_pads_wrap(resnet18):
    model = circular(copy.deepcopy(resnet18), log=False)
    assert all(m.padding_mode == "circular" for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        x = torch.randn(1, 3, 65, 65)
        assert model(x).shape == (1, 1000)
        features = nn.Sequential(*list(model.children())[:-2])
        original = nn.Sequential(*list(resnet18.children())[:-2])
        assert features(x).shape == original(x).shape


def test_circular_then_antialias_blurs_everything(resnet18):
    """BUG: circular() wraps a padded MaxPool2d into Sequential(CircularPad2d, MaxPool2d(
    padding=0)); antialias() then skips that pool ("output size is neither ceil(H/s) nor
    floor(H/s)"), so resnet18's max-pool stays strided (aliased)."""
    model = circular(copy.deepcopy(resnet18), log=False)
    antialias(model, "binomial-5", log=False)
    left = _strided(model)
    assert left == {}, f"circular() then antialias() left strided layers: {left}"
