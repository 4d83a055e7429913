"""Shift families (study.metrics.families): each family's shifts against independent
definitions (numpy's FFT, explicit padding and slicing, torch.roll), each score against
a brute-force count on a tiny network, the scores' order, APS's circular-only
invariance, the trial's final metrics and the config's one-line errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.layers import APSPool2d
from study.metrics import evaluate
from study.metrics.families import (
    FAMILIES,
    check_grid,
    crop_offsets,
    family_metric_names,
    family_scores,
    grid_scores,
    subpixel_offsets,
    subpixel_shift,
)
from study.metrics.figures import ESSENTIAL, report_figures
from study.metrics.names import FINAL_METRICS, TEST_METRICS
from study.service.space import SearchSpace
from study.trial.config import ConfigError, from_mapping

# --- the shifts -----------------------------------------------------------------------------


def _numpy_subpixel(x: np.ndarray, dh: float, dw: float) -> np.ndarray:
    """The band-limited shift by its definition, with numpy's FFT: each axis's DFT bin k
    (signed, ``fftfreq * n``) times ``exp(-2 pi i k d / n)``; the Nyquist bin of an even
    axis times ``cos(pi d)``."""

    def ramp(n: int, d: float) -> np.ndarray:
        k = np.fft.fftfreq(n) * n
        factor = np.exp(-2j * np.pi * k * d / n)
        if n % 2 == 0:
            factor[n // 2] = np.cos(np.pi * d)
        return factor

    h, w = x.shape[-2:]
    return np.real(np.fft.ifft2(np.fft.fft2(x) * np.outer(ramp(h, dh), ramp(w, dw))))


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (5, 5), (1, 6)])
@pytest.mark.parametrize("offset", [(0.25, 0.5), (0.5, 0.0), (0.75, 0.25), (1.5, -0.3)])
def test_subpixel_shift_matches_numpy_fft(size, offset):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = _numpy_subpixel(x.numpy(), *offset)
    np.testing.assert_allclose(subpixel_shift(x, *offset).numpy(), expected, atol=1e-12)
    assert subpixel_shift(x.float(), *offset).dtype == torch.float32


@pytest.mark.parametrize("offset", [(0, 0), (1, 0), (0, 3), (-2, 5), (7, 7)])
def test_subpixel_shift_by_whole_pixels_is_the_circular_shift(offset):
    x = torch.randn(2, 3, 8, 7)
    rolled = torch.roll(x, offset, (-2, -1))
    assert torch.equal(subpixel_shift(x, *offset), rolled)  # exactly
    through_fft = subpixel_shift(x.double(), *offset, exact_integers=False)
    assert torch.allclose(through_fft, rolled.double(), atol=1e-12)  # the formula agrees


def test_subpixel_shift_is_real_keeps_energy_and_composes():
    """A band-limited shift is unitary on real images (energy kept, with the Nyquist
    convention) and two half-pixel shifts make the one-pixel circular shift."""
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    band_limited = _remove_nyquist(x)  # cos(pi/2) = 0 at Nyquist: half shifts drop that bin
    half = subpixel_shift(band_limited, 0.5, 0.5)
    assert torch.allclose(half.pow(2).sum(), band_limited.pow(2).sum(), atol=1e-10)
    again = subpixel_shift(half, 0.5, 0.5)
    assert torch.allclose(again, band_limited.roll((1, 1), (-2, -1)), atol=1e-12)


def _remove_nyquist(x: torch.Tensor) -> torch.Tensor:
    spectrum = torch.fft.fft2(x)
    spectrum[..., x.shape[-2] // 2, :] = 0
    spectrum[..., :, x.shape[-1] // 2] = 0
    return torch.fft.ifft2(spectrum).real


def test_crop_family_is_explicit_zero_padding_and_slicing():
    """Every offset of the grid against its own padding and slicing: content moves by
    ``(dy, dx)``, zeros fill in, what leaves is lost."""
    x = torch.randn(3, 2, 6, 6)
    net = _TinyNet(2, 6)
    for dy, dx in crop_offsets(2):
        expected = torch.zeros_like(x)
        src_rows = slice(max(0, -dy), 6 - max(0, dy))
        dst_rows = slice(max(0, dy), 6 - max(0, -dy))
        src_cols = slice(max(0, -dx), 6 - max(0, dx))
        dst_cols = slice(max(0, dx), 6 - max(0, -dx))
        expected[..., dst_rows, dst_cols] = x[..., src_rows, src_cols]
        index = crop_offsets(2).index((dy, dx))
        window = _grid_images(x, "crop", 2, 1)[index]
        assert torch.equal(window, expected), (dy, dx)
    assert len(crop_offsets(2)) == 25 and len(subpixel_offsets(3)) == 9
    assert net(x).shape == (3, 4)


# --- the scores against brute force ---------------------------------------------------------


class _TinyNet(nn.Module):
    """A small conv net with zero padding and a strided conv: not shift-invariant."""

    def __init__(self, channels: int = 3, size: int = 8, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6 * ((size + 1) // 2) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)).flatten(1))


def _grid_images(x: torch.Tensor, family: str, margin: int, steps: int) -> list[torch.Tensor]:
    """Each offset's shifted images, one at a time, by the definitions above."""
    if family == "crop":
        padded = F.pad(x, (margin,) * 4)
        h, w = x.shape[-2:]
        return [
            padded[..., margin - dy : margin - dy + h, margin - dx : margin - dx + w]
            for dy, dx in crop_offsets(margin)
        ]
    if family == "subpixel":
        return [
            torch.from_numpy(_numpy_subpixel(x.double().numpy(), dh, dw)).float()
            for dh, dw in subpixel_offsets(steps)
        ]
    h, w = x.shape[-2:]
    return [x.roll((dh, dw), (-2, -1)) for dh in range(h) for dw in range(w)]


def _brute_force(net, images, labels, family, margin, steps) -> dict[str, float]:
    """Shift, forward one image at a time, count: consistency over all ordered pairs of
    offsets (the same one allowed), worst-case and mean accuracy."""
    shifted = _grid_images(images, family, margin, steps)
    with torch.no_grad():
        top = [[net(s[i : i + 1]).argmax().item() for s in shifted] for i in range(len(images))]
    agree = worst = mean = 0.0
    for classes, label in zip(top, labels.tolist(), strict=True):
        pairs = list(itertools.product(classes, repeat=2))
        agree += sum(a == b for a, b in pairs) / len(pairs)
        worst += all(c == label for c in classes)
        mean += sum(c == label for c in classes) / len(classes)
    n = len(images)
    return {"consistency": agree / n, "acc_worst": worst / n, "acc_mean": mean / n}


@pytest.mark.parametrize(
    ("family", "margin", "steps"),
    [("crop", 2, 1), ("crop", 4, 1), ("subpixel", 0, 3), ("subpixel", 0, 4), ("circular", 0, 1)],
)
def test_family_scores_equal_a_brute_force_count(family, margin, steps):
    torch.manual_seed(1)
    net = _TinyNet().eval()
    images = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        labels = net(images).argmax(1)  # correct unshifted: the shifts decide the scores
    labels[0] = (labels[0] + 1) % 4  # and one wrong even there
    got = family_scores(net, images, labels, family, margin, steps, batch_size=7)
    expected = _brute_force(net, images, labels, family, margin, steps)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got["acc_worst"] <= got["acc_mean"] <= 1
    assert 0 < got["consistency"] < 1  # the net is not invariant: the test can fail


@pytest.mark.parametrize(("family", "margin", "steps"), [("crop", 0, 1), ("subpixel", 0, 1)])
def test_a_one_offset_grid_scores_plain_accuracy(family, margin, steps):
    net = _TinyNet().eval()
    images, labels = torch.randn(10, 3, 8, 8), torch.randint(4, (10,))
    with torch.no_grad():
        plain = (net(images).argmax(1) == labels).double().mean().item()
    got = family_scores(net, images, labels, family, margin, steps)
    assert got == {"consistency": 1.0, "acc_worst": plain, "acc_mean": plain}


def test_grid_scores_worst_never_above_mean_on_random_tables():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        top = torch.randint(3, (5, 7), generator=generator)
        labels = torch.randint(3, (5,), generator=generator)
        scores = grid_scores(top, labels)
        assert scores["acc_worst"] <= scores["acc_mean"]
        assert 1 / 3 - 1e-12 <= scores["consistency"] <= 1  # sum_k (n_k/K)^2 >= 1/classes


def test_aps_is_consistent_under_circular_shifts_and_not_under_crops():
    """APS picks the subsampling phase of largest norm, so a *circular* shift of a
    circularly padded input only changes which phase is picked: the pooled map is the
    same up to a circular shift, and a global average pool makes the class the same.
    A zero-fill shift is not a circular shift of the same content: the bright pixel at
    the border leaves the image at some offsets, the pooled mean drops to 0 and the
    class flips. So 100 % circular consistency, below 100 % crop consistency."""
    net = nn.Sequential(
        APSPool2d(1, "delta", stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1, 2),
    ).eval()
    with torch.no_grad():
        net[3].weight.copy_(torch.tensor([[16.0], [0.0]]))  # class 0: mean of the pooled map
        net[3].bias.copy_(torch.tensor([0.0, 0.5]))  # class 1: the map is (nearly) empty
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 0, 0] = 1.0  # one bright pixel in the corner
    labels = torch.tensor([0])
    circular = family_scores(net, image, labels, "circular")
    crop = family_scores(net, image, labels, "crop", margin=2)
    assert circular == {"consistency": 1.0, "acc_worst": 1.0, "acc_mean": 1.0}
    assert crop["consistency"] < 1 and crop["acc_worst"] == 0.0
    assert crop["acc_mean"] == pytest.approx(9 / 25)  # the pixel stays for dy, dx >= 0


# --- the trial's metrics, the config -------------------------------------------------------


def test_evaluate_reports_every_family_and_the_circular_one_matches_today():
    from study.models import build

    torch.manual_seed(0)
    model = build("vgg11_bn", width=0.125).eval()
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(10, (4,))
    result = evaluate(model, images, labels, feature_images=0, crop_margin=1, subpixel_steps=2)
    for family in FAMILIES:
        for score in ("consistency", "acc_worst", "acc_mean"):
            assert 0 <= result[f"{score}_{family}"] <= 1
        assert result[f"shift_seconds_{family}"] >= 0
    assert result["consistency_circular"] == pytest.approx(result["consistency"], abs=1e-12)
    assert result["acc_mean_circular"] == pytest.approx(result["acc_shift_mean"], abs=1e-12)
    assert set(family_metric_names()) <= set(TEST_METRICS) <= set(FINAL_METRICS)
    assert result["offset_accuracy_crop"].shape == (3, 3)
    assert result["offset_accuracy_subpixel"].shape == (2, 2)
    assert result["offset_accuracy_crop"].mean().item() == pytest.approx(result["acc_mean_crop"])
    assert result["offset_accuracy_crop"][1, 1].item() == pytest.approx(result["acc"])  # (0, 0)
    figures = report_figures({"vgg": result}, ESSENTIAL)
    assert set(figures) == {"shift_heatmap", "shift_families"}
    assert len(figures["shift_families"].axes) == 3  # two panels and the colour bar
    only = evaluate(model, images, labels, feature_images=0, families=())
    assert not any(key.endswith(("_crop", "_subpixel")) for key in only)
    assert "shift_families" not in report_figures({"vgg": only}, ESSENTIAL)


@pytest.mark.parametrize(
    ("eval_section", "field", "message"),
    [
        ({"crop_margin": -1}, "eval.crop_margin", "outside [0, 512]"),
        ({"crop_margin": 17}, "eval.crop_margin", "over half the 32x32 images; allowed: 0 to 16"),
        ({"subpixel_steps": 0}, "eval.subpixel_steps", "outside [1, 64]"),
        ({"families": ["circular", "rotate"]}, "eval.families", "'rotate'"),
        ({"families": ["crop", "crop"]}, "eval.families", "names a family twice"),
    ],
)
def test_bad_eval_values_are_one_line_config_errors(eval_section, field, message):
    with pytest.raises(ConfigError) as error:
        from_mapping({"eval": eval_section})
    text = str(error.value)
    assert text.startswith(f"{field}: ") and message in text and "\n" not in text


def test_check_grid_names_the_field():
    for args, start in [
        (("blur", 1, 1), "families: 'blur'"),
        (("crop", 5, 1, (8, 8)), "crop_margin: 5 must be at most 4"),
        (("subpixel", 1, 0), "subpixel_steps: expected a whole number >= 1"),
    ]:
        with pytest.raises(ValueError, match=f"^{start}"):
            check_grid(*args)


def test_a_space_may_optimise_a_family_it_evaluates_and_not_one_it_leaves_out(tmp_path):
    text = (
        "model: {name: vgg11_bn, width: 0.125, filter: {choice: [delta, binomial-3]}}\n"
        "train: {epochs: 1}\n"
        "study: {objectives: {test_acc_worst_crop: max, test_consistency_subpixel: max}}\n"
    )
    (tmp_path / "space.yaml").write_text(text)
    space = SearchSpace.load(tmp_path / "space.yaml")
    assert list(space.settings.objectives) == ["test_acc_worst_crop", "test_consistency_subpixel"]
    (tmp_path / "fewer.yaml").write_text(text + "eval: {families: [circular, crop]}\n")
    with pytest.raises(ConfigError, match=r"^study\.objectives\.test_consistency_subpixel: needs"):
        SearchSpace.load(tmp_path / "fewer.yaml")
