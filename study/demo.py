"""A one-minute demonstration of anti-aliasing at work, on built-in data, with no training.

It measures what the paper's Fig. 4 measures at the last layer: how far a network's
output features move when the input is circularly shifted (eq. 2), as a cosine distance
normalised by the mean distance between *different* images (0 = shift-invariant,
1 = a shift changes the features as much as swapping the image). The networks are
freshly initialised, identically for every filter (blur layers add no weights), so the
only difference between them is the low-pass filter before each subsampling. Trained
networks and their accuracy come with ``study trial`` and ``study run``.

The images are 1/f ("pink") noise, whose power spectrum falls like natural images',
generated from a seed: they need no download.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from study import filters, models
from study.data import pink_noise
from study.filters.plot import plot_responses
from study.layers import max_blur_pool2d

DEFAULT_FILTERS = ("delta", "rect-2", "triangle-3", "binomial-5", "binomial-7")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: one network, several filters, a grid of shifts."""

    model: str = "vgg13_bn"
    width: float = 0.25
    filters: tuple[str, ...] = DEFAULT_FILTERS
    images: int = 32
    max_shift: int = 8
    seed: int = 0


def toy_example() -> dict[str, list[float]]:
    """Section 3.2 / Fig. 3: max-pooling vs MaxPool-BlurDownsample on a 1-D signal and
    the same signal shifted by one sample."""
    row = torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1])
    out = {}
    for name in ("delta", "triangle-3"):
        taps = torch.as_tensor(filters.design(name), dtype=torch.float32)
        for label, signal in (("", row), (" shifted", row.roll(1))):
            pooled = max_blur_pool2d(signal.expand(1, 1, 1, 8), taps, (1, 2), (1, 2))
            out[f"{name}{label}"] = [round(v, 4) for v in pooled.flatten().tolist()]
    return out


def feature_shift_distance(
    model: nn.Module, images: Tensor, max_shift: int, progress: tqdm | None = None
) -> Tensor:
    """``(max_shift, max_shift)`` map: mean cosine distance between the features of each
    image and of the image circularly shifted by ``(dh, dw)``, divided by the mean
    distance between features of different images (Fig. 4's normalisation)."""
    features = _features(model)
    with torch.no_grad():
        reference = features(images)
        others = reference.roll(1, 0)
        between_images = (1 - F.cosine_similarity(reference, others)).mean()
        distance = torch.zeros(max_shift, max_shift)
        for dh in range(max_shift):
            for dw in range(max_shift):
                shifted = features(images.roll((dh, dw), (2, 3)))
                distance[dh, dw] = (1 - F.cosine_similarity(reference, shifted)).mean()
                if progress is not None:
                    progress.update()
    return distance / between_images


def _features(model: nn.Module):
    """The model's penultimate features: everything before its linear classifier."""
    classifier = model.classifier

    def run(x: Tensor) -> Tensor:
        captured = {}
        handle = classifier.register_forward_hook(lambda m, i, o: captured.setdefault("x", i[0]))
        try:
            model(x)
        finally:
            handle.remove()
        return captured["x"]

    return run


def run_demo(config: DemoConfig, out: Path) -> dict:
    """Run the demo, write ``demo.json`` and ``demo.png`` under ``out``, return the results."""
    specs = [filters.parse(f) for f in config.filters]
    images = pink_noise(config.images, seed=config.seed)
    results = {"config": {**config.__dict__, "filters": [str(s) for s in specs]}, "filters": []}
    results["toy_example"] = toy_example()
    maps = {}
    total = len(specs) * config.max_shift**2
    with tqdm(total=total, desc="shifts", unit="shift", leave=False, disable=None) as progress:
        for spec in specs:
            torch.manual_seed(config.seed)
            model = models.build(config.model, width=config.width, filter=spec).eval()
            start = time.perf_counter()
            distance = feature_shift_distance(model, images, config.max_shift, progress)
            seconds = time.perf_counter() - start
            maps[str(spec)] = distance
            info = filters.describe(spec)
            results["filters"].append(
                {
                    "filter": str(spec),
                    "taps": info["taps"],
                    "cutoff_3db": round(info["cutoff_3db"], 4),
                    "nyquist_gain": round(info["nyquist_gain"], 4),
                    "shift_distance": float(distance.mean()),
                    "forward_ms_per_image": 1e3 * seconds / (config.images * config.max_shift**2),
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps(results, indent=2))
    _figure(specs, maps).savefig(out / "demo.png", dpi=120)
    return results


def _figure(specs, maps):
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is

    fig = Figure(figsize=(3.2 * (len(specs) + 2), 3.4), layout="constrained")
    grid = fig.add_gridspec(1, len(specs) + 2)
    plot_responses(specs, ax=fig.add_subplot(grid[0, :2]))
    vmax = max(float(m.max()) for m in maps.values()) or 1.0
    for index, spec in enumerate(specs):
        ax = fig.add_subplot(grid[0, index + 2])
        image = ax.imshow(maps[str(spec)].numpy(), cmap="magma", vmin=0, vmax=vmax)
        ax.set(title=f"{spec}\nmean {float(maps[str(spec)].mean()):.3f}", xlabel="dw", ylabel="dh")
    fig.colorbar(image, ax=ax, label="feature distance / between-image distance")
    return fig


def format_table(results: dict) -> str:
    """The demo's results as a text table, baseline first."""
    rows = results["filters"]
    baseline = rows[0]["shift_distance"] or 1.0
    versus = f"vs {rows[0]['filter']}"
    header = f"{'taps':>4} {'-3dB':>6} {'|H(Nyq)|':>8} {'shift distance':>15}"
    lines = [f"{'filter':<28} {header} {versus:>10}"]
    for row in rows:
        design = f"{row['taps']:>4} {row['cutoff_3db']:>6.3f} {row['nyquist_gain']:>8.3f}"
        distance = row["shift_distance"]
        lines.append(f"{row['filter']:<28} {design} {distance:>15.4f} {distance / baseline:>9.2f}x")
    return "\n".join(lines)
