"""The CPU fast path (study/layers/fastpath.py) against the conv-path reference
(tests/reference_layers.py, the layers as they were): outputs and gradients to 1e-6."""

from __future__ import annotations

import pytest
import reference_layers as reference  # tests/ is on sys.path, as for servers
import torch

from study.layers import MaxBlurPool2d, fastpath, functional

PADDINGS = ("circular", "reflect", "replicate", "zeros")
SIZES = (1, 2, 3, 5, 8, 32)


def taps_of(size: int, dtype=torch.float64) -> torch.Tensor:
    taps = torch.rand(size, generator=torch.Generator().manual_seed(size), dtype=dtype) + 0.1
    return taps / taps.sum()


def compare(new_fn, ref_fn, x: torch.Tensor, taps: torch.Tensor, *args, tol=1e-6) -> None:
    """Same output and input gradient in float32; the same and the taps' gradient (a sum
    over every pixel, with cancellation: float32 rounding is not 1e-6 there) in float64."""
    for dtype, checked in ((torch.float32, 2), (torch.float64, 3)):
        results = []
        for fn in (new_fn, ref_fn):
            xx = x.detach().to(dtype).clone().requires_grad_()
            tt = taps.detach().to(dtype).clone().requires_grad_()
            out = fn(xx, tt, *args)
            weight = torch.linspace(-1, 2, out.numel(), dtype=dtype).view(out.shape)
            (out * weight).sum().backward()
            results.append((out.detach(), xx.grad, tt.grad)[:checked])
        for new, ref in zip(results[0], results[1], strict=True):
            if ref is None:  # the reference ignores a 1-tap filter's value (it must be 1)
                continue
            assert new.shape == ref.shape
            torch.testing.assert_close(new, ref, atol=tol, rtol=0)


def inputs(height: int, width: int, dtype=torch.float32, channels: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(height * 100 + width)
    return torch.randn(1, channels, height, width, generator=generator, dtype=dtype)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("n_taps", range(1, 8))
def test_blur_pool(padding: str, size: int, n_taps: int) -> None:
    x = inputs(size, size + 1 if size < 32 else size)
    taps = taps_of(n_taps, torch.float32)
    for stride, rounding in (((2, 2), "ceil"), (1, "ceil"), ((2, 3), "floor")):
        assert fastpath.applies(x)
        args = (stride, padding, rounding)
        compare(functional.blur_pool2d, reference.blur_pool2d, x, taps, *args)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("n_taps", (1, 2, 3, 4, 5, 7))
@pytest.mark.parametrize("name", ("max_blur_pool2d", "avg_blur_pool2d"))
def test_pool_blur(padding: str, size: int, n_taps: int, name: str) -> None:
    x = inputs(size, size)
    taps = taps_of(n_taps, torch.float32)
    new, ref = getattr(functional, name), getattr(reference, name)
    for kernel, stride, order, rounding in (
        (2, 2, "pool-blur", "floor"),
        ((1, 2), (2, 1), "pool-blur", "ceil"),
        (3, 2, "pool-blur", "floor"),
        (2, 2, "blur-pool", "floor"),
    ):
        compare(new, ref, x, taps, kernel, stride, padding, order, rounding)


@pytest.mark.parametrize("padding", PADDINGS)
def test_max_ties_split_like_torch_maximum(padding: str) -> None:
    """After a ReLU, many equal values: each tied side gets half, as the reference."""
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).relu()
    x[0, 0] = 1.0
    compare(
        lambda x, t: functional.max_blur_pool2d(x, t, padding=padding),
        lambda x, t: reference.max_blur_pool2d(x, t, padding=padding),
        x,
        taps_of(5, torch.float32),
    )


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("n_taps", (2, 3))
@pytest.mark.parametrize("size", ((1, 1), (2, 3), (3, 2)))
def test_gradcheck(padding: str, n_taps: int, size: tuple[int, int]) -> None:
    x = torch.randn(1, 1, *size, dtype=torch.float64, requires_grad=True)
    taps = taps_of(n_taps).requires_grad_()
    for fn in (functional.max_blur_pool2d, functional.avg_blur_pool2d):
        assert torch.autograd.gradcheck(fn, (x, taps, 2, 2, padding))
    assert torch.autograd.gradcheck(functional.blur_pool2d, (x, taps, 2, padding))


def test_choice_is_automatic() -> None:
    assert fastpath.applies(torch.zeros(1, 1, 32, 32))
    assert not fastpath.applies(torch.zeros(1, 1, 65, 8))  # large maps: conv path
    assert not fastpath.applies(torch.zeros(1, 1, 8, 8, dtype=torch.float16))
    big = torch.randn(1, 2, 70, 66)
    taps = taps_of(5, torch.float32)
    torch.testing.assert_close(
        functional.max_blur_pool2d(big, taps, padding="reflect"),
        reference.max_blur_pool2d(big, taps, padding="reflect"),
    )


def test_modules_use_it() -> None:
    from study.layers import MaxBlurPool2d

    layer = MaxBlurPool2d(3, "binomial-5", padding="reflect")
    x = inputs(16, 16)
    expected = reference.max_blur_pool2d(x, layer.lowpass(), padding="reflect")
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=0)


def test_bad_rounding_and_padding() -> None:
    x, taps = torch.zeros(1, 1, 4, 4), taps_of(3, torch.float32)
    with pytest.raises(ValueError, match="rounding"):
        functional.blur_pool2d(x, taps, rounding="round")
    with pytest.raises(ValueError, match="padding"):
        functional.blur_pool2d(x, taps, padding="wrap")


def test_matrices_cached_in_inference_mode_serve_training() -> None:
    """Evaluation under ``torch.inference_mode()`` fills the caches; a training step
    after it must still be able to save them for backward."""
    fastpath._CACHE.clear()
    fastpath._scatter.cache_clear()
    layer = MaxBlurPool2d(3, "learnable(init=triangle-3)")
    fixed = MaxBlurPool2d(3, "binomial-5")
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        layer(x), fixed(x)
    x.requires_grad_(True)
    (layer(x).sum() + fixed(x).sum()).backward()
    assert x.grad is not None
    assert all(p.grad is not None for p in layer.parameters())


def test_torch_export_traces_the_convolution_path() -> None:
    """``torch.export`` (MLflow's pt2 models) and ``torch.compile`` cannot read the
    taps' values that key the matrix cache: under a trace the layers take the
    convolution path, with the same numbers."""
    layer = MaxBlurPool2d(3, "binomial-5").eval()
    x = torch.randn(2, 3, 16, 16)
    exported = torch.export.export(layer, (x,))
    torch.testing.assert_close(exported.module()(x), layer(x), atol=1e-6, rtol=1e-6)
