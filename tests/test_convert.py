"""Model surgery on torchvision networks: every strided layer blurred, shapes and
state dicts unchanged, idempotence, exclusions, circular padding, and where a strided
convolution's blur goes (after its activation, as the paper does, or the reported
fallbacks)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from study import models
from study.convert import (
    STRIDED_CONV,
    NothingConvertedWarning,
    antialias,
    circular,
    convert_downsampling,
)
from study.filters import FilterSpecError, parse
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
    """With ``strided_conv="after-conv"`` every strided layer becomes its blurred twin
    (BlurConv2d for convolutions); the paper's placement is tested further down."""
    original = request.getfixturevalue(model_name)
    model = copy.deepcopy(original)
    strided = _strided(original)
    expected_counts = {"resnet18": {"Conv2d": 7, "MaxPool2d": 1}, "vgg13_bn": {"MaxPool2d": 5}}
    assert _counts(strided) == expected_counts[model_name]  # the networks as we know them

    report = convert_downsampling(model, "binomial-5", strided_conv="after-conv")
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


@pytest.mark.parametrize("strided_conv", ["after-activation", "after-conv"])
def test_resnet_feature_sizes_at_odd_inputs(resnet18, strided_conv):
    original = copy.deepcopy(resnet18)
    model = antialias(copy.deepcopy(resnet18), "triangle-3", strided_conv=strided_conv, log=False)
    probes = {}
    names = ("relu", "maxpool", "layer2", "layer3", "layer4")  # relu: the stem's output
    for name in names:
        for net, key in ((model, "new"), (original, "old")):
            net.get_submodule(name).register_forward_hook(
                lambda _m, _i, out, name=name, key=key: probes.update({(name, key): out.shape})
            )
    with torch.no_grad():
        x = torch.randn(1, 3, 97, 97)
        model(x)
        original(x)
    for name in names:
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
    assert type(model.relu) is nn.ReLU  # the stem's activation is not blurred either
    assert "conv1" not in report.placements()


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
    with pytest.raises(
        ValueError, match=r"^strided_conv must be one of after-activation, after-conv; got 'x'$"
    ):
        antialias(model, "binomial-3", strided_conv="x", log=False)
    with pytest.raises(ValueError, match=r"^keep_stem must be one of True, False; got 'yes'$"):
        antialias(model, "binomial-3", keep_stem="yes", log=False)
    assert type(model[0]) is nn.Conv2d and model[0].stride == (2, 2)  # nothing half-done


# --- strided convolutions: the blur after the activation (Fig. 1, Section 3.2) -------------


def _random_norms(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and affines, so that eval-mode BN is no identity
    and the ReLU after it cuts somewhere else than at 0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model


def _blur(channels: int) -> BlurPool2d:
    return BlurPool2d(channels, "binomial-5", 2, "reflect")


def _paper_basic_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's strided BasicBlock as the paper places its blurs, written out: conv1
    densely, BN, ReLU, blur-pool; the shortcut blur-pools before its 1x1 conv."""
    out = F.conv2d(x, block.conv1.weight, None, 1, 1)
    out = _blur(out.shape[1])(F.relu(block.bn1(out)))
    out = block.bn2(block.conv2(out))
    conv, bn = block.downsample
    return F.relu(out + bn(F.conv2d(_blur(x.shape[1])(x), conv.weight)))


def _paper_bottleneck(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's strided Bottleneck (stride on the 3x3 conv2), as the paper places it."""
    out = F.relu(block.bn1(block.conv1(x)))
    out = F.conv2d(out, block.conv2.weight, None, 1, 1)
    out = _blur(out.shape[1])(F.relu(block.bn2(out)))
    out = block.bn3(block.conv3(out))
    conv, bn = block.downsample
    return F.relu(out + bn(F.conv2d(_blur(x.shape[1])(x), conv.weight)))


def _paper_resnet(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet forward with the paper's placements, from the unconverted
    ``model``'s weights: 7x7 stem conv densely, BN, ReLU, blur-pool; MaxBlurPool."""
    x = F.conv2d(x, model.conv1.weight, None, 1, 3)
    x = _blur(x.shape[1])(F.relu(model.bn1(x)))
    x = MaxBlurPool2d(None, "binomial-5", 3, 2, "reflect", rounding="ceil")(x)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            if block.stride == 1:
                x = block(x)
            elif isinstance(block, torchvision.models.resnet.BasicBlock):
                x = _paper_basic_block(block, x)
            else:
                x = _paper_bottleneck(block, x)
    return model.fc(torch.flatten(model.avgpool(x), 1))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_blurs_after_the_relu_as_the_paper_does(arch):
    torch.manual_seed(0)
    original = _random_norms(getattr(torchvision.models, arch)().eval())
    model = copy.deepcopy(original)
    report = convert_downsampling(model, "binomial-5")

    with torch.no_grad():
        for size in (64, 57):
            x = torch.randn(2, 3, size, size)
            torch.testing.assert_close(model(x), _paper_resnet(original, x), rtol=0, atol=1e-5)

    model.load_state_dict(original.state_dict(), strict=True)
    assert list(model.state_dict()) == list(original.state_dict())
    strided = "conv1" if arch == "resnet18" else "conv2"
    placements = report.placements()
    assert placements == {
        "conv1": "after-activation (relu)",
        **{f"layer{i}.0.{strided}": "after-activation (relu)" for i in (2, 3, 4)},
        **{
            f"layer{i}.0.downsample.0": "after-conv (fallback: no activation after it in "
            f"layer{i}.0.downsample: Conv2d -> BatchNorm2d -> output)"
            for i in (2, 3, 4)
        },
    }
    # the stem's ReLU is called once: wrapped in place; the blocks call theirs twice:
    # rewritten as graph modules that keep their children, names and attributes
    assert type(model) is type(original)
    assert [type(m).__name__ for m in model.relu] == ["ReLU", "BlurPool2d"]
    assert [name for name, _ in report.rewritten] == ["layer2.0", "layer3.0", "layer4.0"]
    assert all("its relu module is shared (called" in why for _, why in report.rewritten)
    block = model.layer2[0]
    assert isinstance(block, torch.fx.GraphModule) and block.stride == 2
    assert getattr(block, f"{strided}_aa").spec == parse("binomial-5")
    assert getattr(block, strided).stride == (1, 1)
    assert isinstance(block.downsample[0], BlurConv2d)
    assert "after-activation (relu)" in str(report) and "rewrote layer2.0" in str(report)


def test_placements_differ_on_resnet18(resnet18):
    """The two placements are different networks (docs/layers.md cites the size)."""
    model = antialias(copy.deepcopy(resnet18), "binomial-5", log=False)
    today = antialias(copy.deepcopy(resnet18), "binomial-5", strided_conv="after-conv", log=False)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - today(x)).abs().max() > 0.1


def test_after_conv_is_the_blurconv_placement(resnet18):
    """``strided_conv="after-conv"``: BlurConv2d for every strided conv, no rewrites."""
    original = _random_norms(copy.deepcopy(resnet18))
    model = copy.deepcopy(original)
    report = convert_downsampling(model, "binomial-5", strided_conv="after-conv")
    by_hand = copy.deepcopy(original)
    for name, module in list(by_hand.named_modules()):
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            _set(by_hand, name, BlurConv2d.from_conv(module, "binomial-5", "reflect"))
    by_hand.maxpool = MaxBlurPool2d(None, "binomial-5", 3, 2, "reflect", rounding="ceil")
    with torch.no_grad():
        x = torch.randn(2, 3, 57, 57)
        torch.testing.assert_close(model(x), by_hand(x), rtol=0, atol=0)
    assert set(report.placements().values()) == {"after-conv"}
    assert report.rewritten == []
    assert not any(isinstance(m, torch.fx.GraphModule) for m in model.modules())


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("mobilenet_v2", {"after-activation (relu6)": 5}),
        ("regnet_x_400mf", {"after-activation (relu)": 5, "proj": 4}),
        ("densenet121", {"after-activation (relu)": 1}),
    ],
)
def test_torchvision_networks_convert_and_run(arch, expected):
    torch.manual_seed(0)
    original = getattr(torchvision.models, arch)().eval()
    model = copy.deepcopy(original)
    report = convert_downsampling(model, "binomial-3")
    found: dict[str, int] = {}
    for name, placement in report.placements().items():
        if placement.startswith("after-conv"):
            # only 1x1 shortcut projections, followed by BN and nothing else
            assert ".proj.0" in name and placement.endswith("Conv2d -> BatchNorm2d -> output)")
            placement = "proj"
        found[placement] = found.get(placement, 0) + 1
    assert found == expected
    assert report.rewritten == [] and type(model) is type(original)
    assert _strided(model) == {}
    model.load_state_dict(original.state_dict(), strict=True)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 48)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["resnet20", "vgg11_bn", "densenet40_12"])
def test_project_networks_are_unaffected(name):
    """study.models already places its blurs as the paper does: converting the plain
    (delta) network gives the blurred one, and converting a blurred one changes nothing."""
    torch.manual_seed(0)
    plain = _random_norms(models.build(name, width=0.25, filter="delta")).eval()
    blurred = models.build(name, width=0.25, filter="binomial-5").eval()
    blurred.load_state_dict(plain.state_dict(), strict=True)
    converted = antialias(copy.deepcopy(plain), "binomial-5", log=False)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(converted(x), blurred(x), rtol=0, atol=1e-5)
    snapshot = [(n, type(m)) for n, m in blurred.named_modules()]
    with pytest.warns(NothingConvertedWarning):
        antialias(blurred, "binomial-5", log=False)
    assert [(n, type(m)) for n, m in blurred.named_modules()] == snapshot


class _Block(nn.Module):
    """conv (stride 2) -> BN -> ``act`` -> conv, with ``act`` a function or a module."""

    def __init__(self, act) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = act
        self.out = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.bn(self.conv(x))))


@pytest.mark.parametrize(
    ("act", "kind", "why"),
    [
        (F.relu, "relu", "is functional (torch.nn.functional.relu)"),
        (torch.relu, "relu", "is functional (torch.relu)"),
        (lambda x: x.relu(), "relu", "is functional (Tensor.relu)"),
        (nn.PReLU(6), "prelu", "module has parameters or buffers"),
    ],
)
def test_functional_or_weighted_activation_rewrites_its_container(act, kind, why):
    torch.manual_seed(0)
    original = _random_norms(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _Block(act))).eval()
    model = copy.deepcopy(original)
    report = convert_downsampling(model, "binomial-5")
    assert report.placements() == {"1.conv": f"after-activation ({kind})"}
    assert report.rewritten == [("1", f"_Block -> torch.fx GraphModule: its {kind} {why}")]
    block = original[1]
    with torch.no_grad():
        x = torch.randn(2, 3, 15, 15)
        dense = block.bn(F.conv2d(original[0](x), block.conv.weight, block.conv.bias, 1, 1))
        expected = block.out(_blur(6)(block.act(dense)))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    assert list(model.state_dict()) == list(original.state_dict())


def test_top_level_functional_activation_falls_back():
    model = _Block(F.relu).eval()  # the pattern is in the top-level forward itself
    report = convert_downsampling(model, "binomial-5")
    assert report.placements() == {
        "conv": "after-conv (fallback: its relu is functional (torch.nn.functional.relu), and "
        "the top-level model's forward is not rewritten (its class would change))"
    }
    assert type(model) is _Block and isinstance(model.conv, BlurConv2d)


class _DataDependent(nn.Module):
    """A forward with Python control flow on the data: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return self.relu(self.conv(x))


def test_untraceable_forward_falls_back_where_it_is():
    stem = [nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    model = nn.Sequential(*stem, _DataDependent()).eval()
    report = convert_downsampling(model, "binomial-5")
    placements = report.placements()
    assert placements["0"] == "after-activation (relu)"
    assert placements["3.conv"].startswith("after-conv (fallback: 3 cannot be traced (")
    assert isinstance(model[3].conv, BlurConv2d) and type(model[3]) is _DataDependent
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4, 4, 4)

    alone = _DataDependent()
    report = convert_downsampling(alone, "binomial-5")
    assert report.placements()["conv"].startswith("after-conv (fallback: the model cannot be")


class _TrainOnlyDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(F.relu(self.conv(x)), 0.5, self.training)


def test_forward_that_depends_on_training_mode_falls_back():
    """A traced graph freezes ``self.training``: such a forward is not rewritten."""
    model = nn.Sequential(_TrainOnlyDropout())
    report = convert_downsampling(model, "binomial-5")
    assert report.placements()["0.conv"].endswith("and 0's forward depends on self.training)")
    assert type(model[0]) is _TrainOnlyDropout


def test_learnable_filters_add_only_taps(resnet18):
    """Learnable taps are new parameters: an original checkpoint loads with strict=False,
    missing exactly the ``*.lowpass.*`` keys."""
    model = antialias(copy.deepcopy(resnet18), "learnable(init=binomial-5)", log=False)
    taps = {name for name in model.state_dict() if ".lowpass." in name}
    assert {"relu.1.lowpass.weight", "layer2.0.conv1_aa.lowpass.weight"} <= taps
    assert "layer2.0.downsample.0.blur.lowpass.weight" in taps and len(taps) == 8
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(resnet18.state_dict())
    result = model.load_state_dict(resnet18.state_dict(), strict=False)
    assert set(result.missing_keys) == taps and result.unexpected_keys == []
    assert {n for n, _ in model.named_parameters() if ".lowpass." in n} == taps


def test_converted_model_copies_and_pickles(resnet18, tmp_path):
    model = antialias(copy.deepcopy(resnet18), "binomial-5", log=False)
    copied = copy.deepcopy(model)
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        expected = model(x)
        for other in (copied, loaded):
            torch.testing.assert_close(other(x), expected, rtol=0, atol=0)
            assert list(other.state_dict()) == list(model.state_dict())
            assert other.layer3[0].stride == 2


def test_rewritten_block_keeps_its_hooks(resnet18):
    model = copy.deepcopy(resnet18)
    shapes = []
    model.layer2[0].register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    antialias(model, "binomial-5", log=False)
    assert isinstance(model.layer2[0], torch.fx.GraphModule)
    with torch.no_grad():
        for net in (model, copy.deepcopy(model)):
            net(torch.randn(1, 3, 64, 64))
    assert shapes == [(1, 128, 8, 8)] * 2


def test_blurs_live_on_the_model_device():
    model = torchvision.models.resnet18().to("meta")
    for strided_conv in STRIDED_CONV:
        converted = antialias(
            copy.deepcopy(model), "binomial-5", strided_conv=strided_conv, log=False
        )
        devices = {b.device.type for n, b in converted.named_buffers() if ".lowpass." in n}
        assert devices == {"meta"}, strided_conv


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
