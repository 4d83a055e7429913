"""Blurred downsampling layers: the paper's toy example (Section 3.2, Fig. 3), shift
equivariance under circular padding (Section 4.1), separability (Appendix E.2), output
sizes, padding on tiny maps, and learnable filters.

References are computed independently: numpy.pad for padding, a direct 2-D depthwise
``F.conv2d`` with the outer-product kernel for the blur, ``torch.nn`` pools, scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from study.filters import design
from study.layers import (
    LAYERS,
    PADDING_MODES,
    BlurAvgPool2d,
    BlurConv2d,
    BlurPool2d,
    FixedTaps,
    LearnableCutoff,
    LearnableTaps,
    MaxBlurPool2d,
    avg_blur_pool2d,
    blur_pool2d,
    create_aa,
    filter_parameters,
    make_taps,
    max_blur_pool2d,
    pad2d,
)

NUMPY_MODE = {"circular": "wrap", "reflect": "reflect", "replicate": "edge", "zeros": "constant"}
ASYMMETRIC = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0]  # no mirror symmetry at any length > 1


def _weights(n: int) -> str:
    return "weights(weights=[" + ", ".join(str(w) for w in ASYMMETRIC[:n]) + "])"


def _specs(n: int) -> list[str]:
    specs = [
        f"rect-{n}",
        f"triangle-{n}",
        f"binomial-{n}",
        f"firwin(taps={n}, cutoff=0.45, window=[kaiser, 5])",
        _weights(n),
        f"learnable(init=binomial-{n})",
        f"learnable(init={_weights(n)}, symmetric=false)",
    ]
    if n > 1:
        specs.append(f"learnable-cutoff(taps={n}, cutoff=0.5)")
    return specs


ALL_SPECS = [spec for n in range(1, 8) for spec in _specs(n)]


def _randomise(layer: nn.Module, seed: int = 0) -> nn.Module:
    """Move learnable taps off their (symmetric) init, so the general path is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if name.endswith("lowpass.weight"):
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return layer


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _numpy_pad(x: torch.Tensor, pad: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    left, right, top, bottom = pad
    widths = ((0, 0), (0, 0), (top, bottom), (left, right))
    return torch.from_numpy(np.pad(x.numpy(), widths, mode=NUMPY_MODE[mode]))


def _reference_blur(x, taps, stride, mode):
    """Direct 2-D depthwise correlation with the outer-product kernel, numpy-padded."""
    taps = torch.as_tensor(taps, dtype=torch.float64)
    k = taps.numel()
    stride = (stride, stride) if isinstance(stride, int) else stride
    padded = _numpy_pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2), mode)
    channels = x.shape[1]
    kernel = torch.outer(taps, taps).expand(channels, 1, k, k)
    return F.conv2d(padded, kernel, stride=stride, groups=channels)


# --- the paper's toy example (Section 3.2, Fig. 3) ----------------------------------------

TOY = torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1])


def _toy(shift: int) -> torch.Tensor:
    return TOY.roll(shift).expand(1, 1, 8, 8).clone()


@pytest.mark.parametrize("shift", [1, -1])
def test_toy_example_plain_max_pool(shift):
    layer = MaxBlurPool2d(1, "delta", padding="circular")
    expected = torch.tensor([0.0, 1, 0, 1]).expand(4, 4)
    torch.testing.assert_close(layer(_toy(0))[0, 0], expected, rtol=0, atol=0)
    torch.testing.assert_close(layer(_toy(shift))[0, 0], torch.ones(4, 4), rtol=0, atol=0)
    for x in (_toy(0), _toy(shift)):
        torch.testing.assert_close(layer(x), nn.MaxPool2d(2, 2)(x), rtol=0, atol=0)


@pytest.mark.parametrize("shift", [1, -1])
def test_toy_example_triangle3(shift):
    layer = MaxBlurPool2d(1, "triangle-3", padding="circular")
    expected = torch.tensor([0.5, 1, 0.5, 1]).expand(4, 4)
    torch.testing.assert_close(layer(_toy(0))[0, 0], expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(
        layer(_toy(shift))[0, 0], torch.full((4, 4), 0.75), rtol=0, atol=1e-7
    )


def test_toy_example_dense_max_pool_is_shift_equivariant():
    """MaxPool_{k,1} commutes with shifts (circular); only the subsampling breaks it."""
    dense = MaxBlurPool2d(1, "delta", stride=1, padding="circular")
    for shift in range(8):
        torch.testing.assert_close(dense(_toy(shift)), dense(_toy(0)).roll(shift, -1))


# --- shift equivariance with circular padding ------------------------------------------------

LAYER_KINDS = {
    "blurpool": lambda spec, stride: BlurPool2d(3, spec, stride=stride),
    "maxblur": lambda spec, stride: MaxBlurPool2d(3, spec, stride=stride),
    "maxblur-k3": lambda spec, stride: MaxBlurPool2d(3, spec, kernel_size=3, stride=stride),
    "maxblur-blurfirst": lambda spec, stride: MaxBlurPool2d(
        3, spec, stride=stride, order="blur-pool"
    ),
    "avgblur": lambda spec, stride: BlurAvgPool2d(3, spec, stride=stride),
    "avgblur-blurfirst": lambda spec, stride: BlurAvgPool2d(
        3, spec, stride=stride, order="blur-pool"
    ),
}


def _assert_equivariant(layer: nn.Module, stride, size=(12, 12)) -> None:
    s_h, s_w = (stride, stride) if isinstance(stride, int) else stride
    layer = _randomise(layer).double()
    assert layer.padding == "circular"
    x = _x(2, 3, *size)
    y = layer(x)
    assert y.shape[-2:] == (size[0] // s_h, size[1] // s_w)
    for dh, dw in ((1, 0), (0, 1), (1, 1), (2, 3), (-1, 2)):
        shifted = layer(x.roll((dh * s_h, dw * s_w), dims=(2, 3)))
        torch.testing.assert_close(
            shifted,
            y.roll((dh, dw), dims=(2, 3)),
            rtol=0,
            atol=1e-12,
            msg=lambda m, dh=dh, dw=dw: f"shift ({dh}, {dw}) x stride: {m}",
        )


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_shift_by_stride_shifts_output_by_one(kind, spec):
    _assert_equivariant(LAYER_KINDS[kind](spec, 2), 2)


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("spec", [s for n in (1, 2, 4, 5, 7) for s in _specs(n)[3:6]])
@pytest.mark.parametrize("stride", [3, (2, 1), (1, 3)], ids=str)
def test_shift_equivariance_other_strides(kind, spec, stride):
    _assert_equivariant(LAYER_KINDS[kind](spec, stride), stride)


@pytest.mark.parametrize("spec", ["binomial-5", "rect-2", _weights(4)])
def test_shift_equivariance_non_square_map(spec):
    _assert_equivariant(BlurPool2d(3, spec, stride=2), 2, size=(10, 6))
    _assert_equivariant(MaxBlurPool2d(3, spec, stride=2), 2, size=(6, 14))


def test_blur_reduces_aliasing_on_toy_example():
    """Sanity: a plain max-pool is not shift-equivariant to odd shifts; the blur narrows
    the gap (the point of the paper, Fig. 3)."""
    x0, x1 = _toy(0), _toy(1)
    plain, blurred = MaxBlurPool2d(1, "delta"), MaxBlurPool2d(1, "triangle-3")
    gap_plain = (plain(x0) - plain(x1)).abs().sum()
    gap_blurred = (blurred(x0) - blurred(x1)).abs().sum()
    assert gap_blurred < gap_plain


# --- separability and the correlation convention ----------------------------------------------


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize("family", ["binomial", "rect", "weights", "firwin"])
@pytest.mark.parametrize("stride", [1, 2, (2, 3)], ids=str)
def test_separable_equals_direct_2d_conv(mode, n, family, stride):
    spec = {
        "binomial": f"binomial-{n}",
        "rect": f"rect-{n}",
        "weights": _weights(n),
        "firwin": f"firwin(taps={n}, cutoff=0.4)",
    }[family]
    taps = torch.from_numpy(design(spec))
    x = _x(2, 3, 9, 10)
    expected = _reference_blur(x, taps, stride, mode)
    got = blur_pool2d(x, taps, stride=stride, padding=mode)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    direct = blur_pool2d(x, taps, stride=stride, padding=mode, separable=False)
    torch.testing.assert_close(direct, expected, rtol=0, atol=1e-12)
    layer = BlurPool2d(3, spec, stride=stride, padding=mode).double()
    expected_layer = _reference_blur(x, layer.lowpass(), stride, mode)
    torch.testing.assert_close(layer(x), expected_layer, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_correlation_convention_1d(n, stride):
    """y[j] = sum_k taps[k] * x[s*j + k - (K-1)//2] (documented), checked on a row with
    non-symmetric taps and circular indices."""
    taps = np.asarray(ASYMMETRIC[:n]) / sum(ASYMMETRIC[:n])
    row = np.random.default_rng(n).normal(size=12)
    expected = [
        sum(taps[k] * row[(stride * j + k - (n - 1) // 2) % 12] for k in range(n))
        for j in range(math.ceil(12 / stride))
    ]
    x = torch.from_numpy(row).view(1, 1, 1, 12)
    got = blur_pool2d(x, torch.from_numpy(taps), stride=(1, stride), padding="circular")
    np.testing.assert_allclose(got[0, 0, 0].numpy(), expected, rtol=0, atol=1e-12)


def test_2d_blur_is_outer_product_of_taps():
    """An impulse through a stride-1 blur gives the (flipped) outer-product kernel."""
    taps = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64) / 7
    impulse = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    impulse[0, 0, 3, 3] = 1
    out = blur_pool2d(impulse, taps, stride=1, padding="zeros")[0, 0, 2:5, 2:5]
    torch.testing.assert_close(out, torch.outer(taps, taps).flip(0, 1), rtol=0, atol=1e-15)


# --- output sizes ------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize("stride", [2, 3, (2, 3)], ids=str)
def test_output_size_ceil_and_floor(n, stride):
    s_h, s_w = (stride, stride) if isinstance(stride, int) else stride
    ceil_layer = BlurPool2d(1, f"binomial-{n}", stride=stride, padding="reflect")
    floor_layer = BlurPool2d(1, f"binomial-{n}", stride=stride, rounding="floor")
    for h in range(1, 14):
        for w in (h, h + 1):
            x = torch.zeros(1, 1, h, w)
            assert ceil_layer(x).shape[-2:] == (math.ceil(h / s_h), math.ceil(w / s_w))
            floor = floor_layer(x).shape[-2:]
            assert floor == (max(1, h // s_h), max(1, w // s_w)), (h, w, floor)


@pytest.mark.parametrize("cls", [MaxBlurPool2d, BlurAvgPool2d])
@pytest.mark.parametrize("order", ["pool-blur", "blur-pool"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_pool_layers_match_torch_pool_sizes(cls, order, n):
    torch_pool = nn.MaxPool2d(2, 2) if cls is MaxBlurPool2d else nn.AvgPool2d(2, 2)
    layer = cls(1, f"binomial-{n}", order=order, padding="replicate")
    ceil_layer = cls(1, f"binomial-{n}", order=order, rounding="ceil")
    for h in range(2, 14):
        x = torch.zeros(1, 1, h, h + 3)
        assert layer(x).shape == torch_pool(x).shape
        assert ceil_layer(x).shape[-2:] == (math.ceil(h / 2), math.ceil((h + 3) / 2))


def _integers(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-50, 50, shape, generator=generator).double()


@pytest.mark.parametrize("size", [(2, 2), (4, 6), (8, 8), (10, 4)])
def test_rect2_blurpool_is_avgpool2x2(size):
    """Appendix E.1: Rect-2 followed by subsampling is AveragePooling."""
    layer = BlurPool2d(3, "rect-2").double()
    x = _integers(2, 3, *size)  # exact in binary: equal to the last bit
    assert torch.equal(layer(x), nn.AvgPool2d(2, 2)(x))
    x = _x(2, 3, *size)
    torch.testing.assert_close(layer(x), nn.AvgPool2d(2, 2)(x), rtol=0, atol=1e-14)
    # odd sizes: floor rounding gives AvgPool2d's output exactly
    odd = _integers(2, 3, size[0] + 1, size[1] + 1)
    floor_layer = BlurPool2d(3, "rect-2", rounding="floor").double()
    assert torch.equal(floor_layer(odd), nn.AvgPool2d(2, 2)(odd))


@pytest.mark.parametrize("size", [(4, 4), (6, 10), (7, 9)])
def test_delta_pool_layers_equal_torch_pools(size):
    x = _x(2, 3, *size)
    torch.testing.assert_close(
        MaxBlurPool2d(3, "delta").double()(x), nn.MaxPool2d(2, 2)(x), rtol=0, atol=0
    )
    torch.testing.assert_close(
        BlurAvgPool2d(3, "delta").double()(x), nn.AvgPool2d(2, 2)(x), rtol=0, atol=1e-15
    )
    torch.testing.assert_close(
        max_blur_pool2d(x, torch.ones(1), 3, 2, padding="zeros", rounding="ceil"),
        nn.MaxPool2d(3, 2, padding=1)(x),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, (2, 3), (3, 1)], ids=str)
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 8)], ids=str)
def test_dense_pools_equal_torch_pools_on_padded_input(mode, kernel, size):
    """Eq. 3's MaxPool_{k,1}: the dense pool pads (k-1)//2 before and k//2 after (zeros
    mode: -inf for max, 0 for mean) and keeps the size; checked against torch's pools."""
    k_h, k_w = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = _x(2, 3, *size)
    pad = ((k_w - 1) // 2, k_w // 2, (k_h - 1) // 2, k_h // 2)
    padded = _numpy_pad(x, pad, mode)
    if mode == "zeros":
        fill = torch.full_like(padded, float("-inf"))
        inside = torch.zeros_like(padded, dtype=torch.bool)
        inside[..., pad[2] : pad[2] + size[0], pad[0] : pad[0] + size[1]] = True
        padded_max = torch.where(inside, padded, fill)
    else:
        padded_max = padded
    one = torch.ones(1, dtype=torch.float64)
    got_max = max_blur_pool2d(x, one, kernel, stride=1, padding=mode)
    got_avg = avg_blur_pool2d(x, one, kernel, stride=1, padding=mode)
    assert got_max.shape == got_avg.shape == x.shape
    torch.testing.assert_close(got_max, F.max_pool2d(padded_max, (k_h, k_w), 1), rtol=0, atol=0)
    torch.testing.assert_close(got_avg, F.avg_pool2d(padded, (k_h, k_w), 1), rtol=0, atol=1e-14)


def test_zeros_padding_of_dense_max_pool_is_minus_infinity():
    """With zeros padding, a max-pool window hanging off the edge ignores the pad (like
    nn.MaxPool2d(ceil_mode=True)), so all-negative maps stay negative."""
    x = -1 - _x(1, 2, 7, 7).abs()
    got = MaxBlurPool2d(2, "delta", padding="zeros", rounding="ceil").double()(x)
    torch.testing.assert_close(got, nn.MaxPool2d(2, 2, ceil_mode=True)(x), rtol=0, atol=0)
    assert (got < 0).all()


def test_avg_blur_pool_function_with_delta():
    x = _x(1, 2, 8, 6)
    torch.testing.assert_close(
        avg_blur_pool2d(x, torch.ones(1, dtype=torch.float64)), F.avg_pool2d(x, 2, 2)
    )


# --- padding on tiny maps ------------------------------------------------------------------


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (1, 3), (2, 5)], ids=str)
@pytest.mark.parametrize("pad", [(3, 3, 3, 3), (0, 1, 0, 1), (2, 7, 5, 0), (6, 6, 1, 2)], ids=str)
def test_pad2d_matches_numpy_pad(mode, size, pad):
    x = _x(2, 1, *size)
    torch.testing.assert_close(pad2d(x, pad, mode), _numpy_pad(x, pad, mode), rtol=0, atol=0)


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("n", [2, 5, 6, 7])
def test_blurpool_on_tiny_maps(mode, size, n):
    x = _x(2, 2, size, size)
    layer = BlurPool2d(2, _weights(n), padding=mode).double()
    expected = _reference_blur(x, layer.lowpass(), 2, mode)
    got = layer(x)
    assert got.shape[-2:] == (math.ceil(size / 2),) * 2
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    for cls in (MaxBlurPool2d, BlurAvgPool2d):
        out = cls(2, _weights(n), padding=mode).double()(x)
        assert out.shape[-2:] == (max(1, size // 2),) * 2
        assert torch.isfinite(out).all()


# --- taps modules, learnable filters -----------------------------------------------------------


def test_fixed_taps_are_non_persistent_buffers():
    layer = BlurPool2d(4, "binomial-5")
    assert isinstance(layer.lowpass, FixedTaps)
    assert list(layer.parameters()) == []
    assert layer.state_dict() == {}
    assert [name for name, _ in layer.named_buffers()] == ["lowpass.taps"]
    torch.testing.assert_close(
        layer.lowpass(), torch.tensor([1.0, 4, 6, 4, 1]) / 16, rtol=0, atol=0
    )
    # and a state dict from a different fixed filter loads strictly
    BlurPool2d(4, "rect-3").load_state_dict(layer.state_dict(), strict=True)


@pytest.mark.parametrize(
    ("spec", "cls", "names"),
    [
        ("learnable(init=binomial-5)", LearnableTaps, ["lowpass.weight"]),
        ("learnable-cutoff(taps=5, cutoff=0.5)", LearnableCutoff, ["lowpass.cutoff_logit"]),
    ],
)
def test_learnable_taps_are_parameters(spec, cls, names):
    layer = BlurPool2d(4, spec)
    assert isinstance(layer.lowpass, cls)
    assert [name for name, _ in layer.named_parameters()] == names
    assert set(layer.state_dict()) == set(names)
    assert isinstance(make_taps(spec), cls)


@pytest.mark.parametrize(
    "spec",
    [
        "learnable(init=binomial-5)",
        "learnable(init=rect-4, symmetric=false)",
        "learnable-cutoff(taps=5, cutoff=0.5)",
        "learnable-cutoff(taps=6, cutoff=0.3, window=[kaiser, 4])",
    ],
)
@pytest.mark.parametrize("cls", [BlurPool2d, MaxBlurPool2d, BlurAvgPool2d])
def test_learnable_filters_get_gradients(spec, cls):
    layer = cls(2, spec)
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    target = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    ((layer(x) - target) ** 2).sum().backward()
    (_, parameter), *rest = filter_parameters(layer)
    assert rest == []
    assert parameter.grad is not None
    assert torch.isfinite(parameter.grad).all()
    assert parameter.grad.abs().sum() > 0


def _projection(weight: np.ndarray, symmetric: bool) -> np.ndarray:
    """Orthogonal projection onto {taps : sum = 1 (and taps mirrored)}, by linear algebra."""
    k = len(weight)
    rows = [np.ones(k)]
    values = [1.0]
    if symmetric:
        for i in range(k // 2):
            row = np.zeros(k)
            row[i], row[k - 1 - i] = 1, -1
            rows.append(row)
            values.append(0.0)
    a, b = np.array(rows), np.array(values)
    return weight - a.T @ np.linalg.solve(a @ a.T, a @ weight - b)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_learnable_taps_are_the_projection_of_the_raw_weight(symmetric, n):
    spec = f"learnable(init=rect-{n}, symmetric={'true' if symmetric else 'false'})"
    taps = LearnableTaps(spec).double()
    weight = np.random.default_rng(n).normal(size=n)
    with torch.no_grad():
        taps.weight.copy_(torch.from_numpy(weight))
    np.testing.assert_allclose(
        taps().detach().numpy(), _projection(weight, symmetric), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize(
    "spec",
    [
        "learnable(init=binomial-5)",
        "learnable(init=rect-4)",
        "learnable(init=binomial-5, symmetric=false)",
        "learnable-cutoff(taps=5, cutoff=0.4)",
    ],
)
def test_learnable_taps_gradients_are_correct(spec):
    """Analytical gradients (through symmetrisation / sinc) match finite differences."""
    layer = BlurPool2d(1, spec).double()
    x = _x(1, 1, 6, 6)
    ((name, parameter),) = filter_parameters(layer)
    start = parameter.detach() + 0.1 * torch.randn_like(parameter)

    def forward(value):
        return torch.func.functional_call(layer, {name: value}, (x,))

    assert torch.autograd.gradcheck(forward, (start.requires_grad_(),))


@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
@pytest.mark.parametrize(
    "spec",
    [
        "learnable(init=binomial-5)",
        "learnable(init=binomial-5, symmetric=false)",
        "learnable(init=weights(weights=[1, 2, 3, 4, 1]), symmetric=false)",
        "learnable(init=rect-4)",
        "learnable-cutoff(taps=5, cutoff=0.5)",
        "learnable-cutoff(taps=4, cutoff=0.4, window=boxcar)",
    ],
)
def test_constraints_hold_after_optimiser_steps(optimiser, spec):
    layer = BlurPool2d(1, spec).double()
    parameters = [p for _, p in filter_parameters(layer)]
    optim = (
        torch.optim.SGD(parameters, lr=0.2, momentum=0.9)
        if optimiser == "sgd"
        else torch.optim.Adam(parameters, lr=0.1)
    )
    initial = layer.lowpass().detach().clone()
    k = initial.numel()
    # an asymmetric target whose sum is far from 1 pulls against both constraints
    target = torch.tensor([3.0, -1.0, 0.5, 2.0, -0.7, 1.3, 0.1], dtype=torch.float64)[:k]
    for _ in range(25):
        optim.zero_grad()
        loss = ((layer.lowpass() - target) ** 2).sum()
        loss.backward()
        optim.step()
        taps = layer.lowpass().detach()
        assert abs(taps.sum().item() - 1.0) < 1e-12
        symmetric = "symmetric=false" not in spec
        if symmetric:
            assert torch.equal(taps, taps.flip(0)), taps
    assert (taps - initial).abs().max() > 1e-3, "the optimiser did not move the taps"
    if "cutoff" in spec:
        assert 0 < layer.lowpass.cutoff.item() < 1


@pytest.mark.parametrize(
    ("taps", "cutoff", "window"),
    [(3, 0.5, "boxcar"), (5, 0.5, "hamming"), (6, 0.3, "hann"), (7, 0.4, ("kaiser", 8.6))],
)
def test_learnable_cutoff_initial_taps_equal_firwin(taps, cutoff, window):
    expected = scipy.signal.firwin(taps, cutoff, window=window)
    expected = expected / expected.sum()
    window_spec = f"[{window[0]}, {window[1]}]" if isinstance(window, tuple) else window
    spec = f"learnable-cutoff(taps={taps}, cutoff={cutoff}, window={window_spec})"
    module = LearnableCutoff(spec)
    np.testing.assert_allclose(module().detach().numpy(), expected, rtol=0, atol=1e-6)
    assert module.cutoff.item() == pytest.approx(cutoff, abs=1e-6)
    np.testing.assert_allclose(design(spec), expected, rtol=0, atol=1e-14)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        exact = LearnableCutoff(spec)
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_allclose(exact().detach().numpy(), expected, rtol=0, atol=1e-12)


def test_learnable_taps_start_at_their_init():
    module = LearnableTaps("learnable(init=binomial-5)")
    torch.testing.assert_close(module().detach(), torch.tensor([1.0, 4, 6, 4, 1]) / 16)


def test_filter_parameters_finds_exactly_the_filter_parameters():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        BlurPool2d(4, "learnable(init=binomial-3)"),
        nn.BatchNorm2d(4),
        MaxBlurPool2d(4, "learnable-cutoff(taps=4, cutoff=0.5)"),
        BlurConv2d(4, 4, 3, stride=2, padding=1, filter="learnable(init=rect-2)"),
        BlurAvgPool2d(4, "binomial-5"),
        nn.Sequential(BlurPool2d(4, "triangle-3"), nn.Conv2d(4, 2, 1)),
    )
    expected = {}
    for module_name, module in model.named_modules():
        if isinstance(module, LearnableTaps | LearnableCutoff):
            for name, parameter in module.named_parameters():
                expected[f"{module_name}.{name}"] = parameter
    assert len(expected) == 3
    found = dict(filter_parameters(model))
    assert set(found) == set(expected)
    assert all(found[name] is expected[name] for name in expected)
    assert dict(filter_parameters(nn.Sequential(nn.Conv2d(1, 1, 3), BlurPool2d(1)))) == {}


# --- BlurConv2d and the factory ----------------------------------------------------------------


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect"])
@pytest.mark.parametrize(("kernel", "pad"), [(3, 1), (1, 0), (5, 2)])
def test_blurconv_with_delta_is_the_strided_conv(padding_mode, kernel, pad):
    conv = nn.Conv2d(3, 5, kernel, stride=2, padding=pad, padding_mode=padding_mode).double()
    blurred = BlurConv2d.from_conv(conv, "delta")
    assert blurred.weight is conv.weight and blurred.bias is conv.bias
    assert set(blurred.state_dict()) == set(conv.state_dict())
    for size in (8, 9):
        x = _x(2, 3, size, size)
        torch.testing.assert_close(blurred(x), conv(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", [1, 3])
def test_blurconv_circular_is_conv_then_blurpool(kernel):
    conv = nn.Conv2d(3, 4, kernel, stride=2, padding=kernel // 2, padding_mode="circular")
    conv = conv.double()
    blurred = BlurConv2d.from_conv(conv, "binomial-5")
    dense = nn.Conv2d(3, 4, kernel, padding=kernel // 2, padding_mode="circular").double()
    dense.load_state_dict(conv.state_dict())
    x = _x(2, 3, 10, 10)
    expected = BlurPool2d(4, "binomial-5").double()(dense(x))
    torch.testing.assert_close(blurred(x), expected, rtol=0, atol=1e-12)
    _assert_equivariant(blurred.blur, 2)


def test_create_aa_factory():
    for kind, cls in LAYERS.items():
        layer = create_aa(kind, 4, "binomial-3", stride=2, padding="reflect")
        assert type(layer) is cls
        assert str(layer.spec) == "binomial-3" and layer.padding == "reflect"
    with pytest.raises(ValueError, match="layer kind"):
        create_aa("nope", 4)
    with pytest.raises(ValueError, match="padding"):
        BlurPool2d(4, padding="wrap")


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate", "zeros"])
def test_pad2d_takes_plain_2d_maps(mode):
    """An ``(H, W)`` map pads like the same map with batch and channel axes."""
    plain = torch.arange(12.0).view(3, 4)
    expected = pad2d(plain[None, None], (1, 2, 1, 1), mode)[0, 0]
    assert torch.equal(pad2d(plain, (1, 2, 1, 1), mode), expected)
