"""The paper's CIFAR networks (Section 4.1, Appendix A) built by name and filter."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from study.filters import FilterSpecError, parse
from study.layers import BLUR_TYPES, BlurPool2d, MaxBlurPool2d
from study.models import available_models, build

FILTERS = ["delta", "binomial-5", "learnable(init=triangle-3)"]


def test_the_papers_networks_are_registered():
    names = available_models()
    assert {"vgg13_bn", "densenet40_12", "resnet20"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("filter", FILTERS)
@pytest.mark.parametrize("name", available_models())
def test_every_model_builds_and_classifies_32px(name, filter):
    torch.manual_seed(0)
    model = build(name, width=0.25, filter=filter)
    assert model.spec == parse(filter)
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    blurs = [m for m in model.modules() if isinstance(m, BLUR_TYPES)]
    if filter == "delta":
        assert blurs == []
    else:
        assert blurs and all(str(b.spec) == str(parse(filter)) for b in blurs)
    if parse(filter).learnable:
        logits.sum().backward()
        grads = [p.grad for n, p in model.named_parameters() if ".lowpass." in f".{n}"]
        assert len(grads) == len(blurs)
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("padding", ["circular", "reflect", "zeros"])
@pytest.mark.parametrize("name", available_models())
def test_padding_reaches_every_conv_and_blur(name, padding):
    model = build(name, width=0.125, filter="binomial-3", padding=padding)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    blurs = [m for m in model.modules() if isinstance(m, BLUR_TYPES)]
    assert convs and blurs
    assert {c.padding_mode for c in convs} == {padding}
    assert {b.padding for b in blurs} == {padding}
    assert build(name, width=0.125, padding=padding)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["vgg13_bn", "resnet20"])
def test_num_classes(name):
    assert build(name, num_classes=3, width=0.125)(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "vgg13"}, "model"),
        ({"name": "resnet50"}, "model"),
        ({"name": "vgg13_bn", "width": 0}, "width"),
        ({"name": "vgg13_bn", "width": -1}, "width"),
        ({"name": "vgg13_bn", "width": 17}, "width"),
        ({"name": "vgg13_bn", "width": "1"}, "width"),
        ({"name": "vgg13_bn", "width": True}, "width"),
        ({"name": "vgg13_bn", "num_classes": 0}, "num_classes"),
        ({"name": "vgg13_bn", "num_classes": 2.5}, "num_classes"),
        ({"name": "vgg13_bn", "num_classes": True}, "num_classes"),
        ({"name": "vgg13_bn", "padding": "wrap"}, "padding"),
    ],
    ids=str,
)
def test_build_rejects_bad_arguments_in_one_line(kwargs, field):
    with pytest.raises(ValueError) as info:
        build(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(field), message


@pytest.mark.parametrize("filter", ["binomial-0", "gaussian-3", "firwin(taps=3, cutoff=2)"])
def test_build_rejects_bad_filter(filter):
    with pytest.raises(FilterSpecError) as info:
        build("resnet20", width=0.25, filter=filter)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("filter")


def test_densenet_rect2_is_the_baseline():
    """Appendix A: DenseNet's 2x2 AvgPool *is* a rect-2 blur, so 'rect-2' builds the
    baseline network."""
    torch.manual_seed(0)
    baseline = build("densenet40_12", width=0.5, filter="delta").double().eval()
    rect = build("densenet40_12", width=0.5, filter="rect-2").double()
    assert sum(isinstance(m, nn.AvgPool2d) for m in baseline.modules()) == 2
    assert sum(isinstance(m, BlurPool2d) for m in rect.modules()) == 2
    rect.load_state_dict(baseline.state_dict(), strict=True)
    rect.eval()
    # non-trivial batch-norm statistics, the same in both
    with torch.no_grad():
        for module in baseline.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2)
    rect.load_state_dict(baseline.state_dict(), strict=True)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(rect(x), baseline(x), rtol=0, atol=1e-12)
    # and a different blur gives a different function (the comparison can fail)
    other = build("densenet40_12", width=0.5, filter="binomial-5").double()
    other.load_state_dict(baseline.state_dict(), strict=True)
    other.eval()
    with torch.no_grad():
        assert not torch.allclose(other(x), baseline(x), atol=1e-6)


def test_vgg13_pools():
    plain = build("vgg13_bn", width=0.125, filter="delta")
    blurred = build("vgg13_bn", width=0.125, filter="binomial-5")
    assert sum(type(m) is nn.MaxPool2d for m in plain.modules()) == 5
    assert not any(isinstance(m, BLUR_TYPES) for m in plain.modules())
    assert sum(isinstance(m, MaxBlurPool2d) for m in blurred.modules()) == 5
    assert not any(isinstance(m, nn.MaxPool2d) for m in blurred.modules())
    # VGG13: 10 conv layers (Simonyan & Zisserman, config B)
    assert sum(isinstance(m, nn.Conv2d) for m in plain.modules()) == 10
    # fixed blurs add no parameters: the state dicts are interchangeable
    assert set(plain.state_dict()) == set(blurred.state_dict())


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_full_width_parameter_counts():
    """Appendix A: DenseNet-40-12 has about 1M parameters, VGG13 about 9M."""
    densenet = _parameters(build("densenet40_12"))
    vgg = _parameters(build("vgg13_bn"))
    assert 1.0e6 <= densenet <= 1.1e6, densenet
    # 10 3x3 convs with bias 64-64-128-128-256-256-512x4, batch norms, Linear(512, 10)
    channels = [3, 64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    convs = sum(9 * a * b + b for a, b in itertools.pairwise(channels))
    batch_norms = 2 * sum(channels[1:])
    expected_vgg = convs + batch_norms + 512 * 10 + 10
    assert vgg == expected_vgg
    assert 9.3e6 <= vgg <= 9.5e6
    # and the blurred ones have exactly as many (fixed taps are buffers)
    assert _parameters(build("densenet40_12", filter="binomial-7")) == densenet


@pytest.mark.parametrize("filter", ["binomial-5", "triangle-3", "learnable(init=rect-4)"])
def test_circular_blurred_resnet_is_invariant_to_shifts_by_total_stride(filter):
    """Every layer is circular and every subsampling blurred: shifting a 64x64 input by
    any multiple of the total stride (4) gives identical logits."""
    torch.manual_seed(0)
    model = build("resnet20", width=0.25, filter=filter, padding="circular").double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2)
            if hasattr(module, "lowpass") and hasattr(module.lowpass, "weight"):
                module.lowpass.weight.add_(0.1 * torch.randn_like(module.lowpass.weight))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.padding_mode == "circular" and c.stride == (1, 1) for c in convs)
    blurs = [m for m in model.modules() if isinstance(m, BLUR_TYPES)]
    assert len(blurs) == 4 and all(b.padding == "circular" for b in blurs)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
        for shift in [(32, 32), (32, 0), (4, 8), (12, -20)]:
            shifted = model(x.roll(shift, dims=(2, 3)))
            torch.testing.assert_close(shifted, logits, rtol=0, atol=1e-5, msg=str(shift))
        # sanity: a shift that is not a multiple of the stride does change the logits
        assert not torch.allclose(model(x.roll(1, dims=3)), logits, rtol=0, atol=1e-9)


def test_the_torch_free_list_of_networks_is_the_registry():
    """``study.models.names`` lets a config name a network without torch; it must list
    exactly what ``study.models.networks`` registers."""
    from study.models.names import BUILTIN_MODELS

    assert sorted(BUILTIN_MODELS) == available_models()
