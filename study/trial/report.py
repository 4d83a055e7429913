"""``study report``: evaluate a saved checkpoint, write its metrics and figures.

Writes ``OUT/metrics.json`` (every scalar and curve of :func:`study.metrics.evaluate`,
plus what was evaluated) and one PNG per figure of :mod:`study.metrics.figures`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from study import models
from study.data import load_split, pink_noise, to_float
from study.metrics import evaluate, summary
from study.metrics.figures import report_figures
from study.trial.checkpoint import METRICS_FILE, load_checkpoint

NOISE = "noise"


@dataclass(frozen=True)
class ReportConfig:
    """What ``study report`` evaluates."""

    checkpoint: Path
    out: Path
    data: str = NOISE
    split: str = "test"
    images: int = 1000
    method: str = "auto"
    feature_images: int = 8
    feature_shifts: int | None = None
    timing: bool = True
    device: str = "cpu"
    seed: int = 0


def load_images(
    source: str, split: str, count: int, mean, std, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """``(float images, labels or None, description)``: the first ``count`` images of a
    data source (0: all), or ``count`` pink-noise images for ``source="noise"``."""
    if source == NOISE:
        images = pink_noise(count or 1000, seed=seed)
        return images, None, f"{len(images)} pink-noise images (labels: unshifted predictions)"
    pixels, labels, _ = load_split(source, split)
    if count:
        # an even spread over classes: the data sources store images sorted by class
        order = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))
        pixels, labels = pixels[order[:count]], labels[order[:count]]
    return to_float(pixels, mean, std), labels, f"{len(pixels)} {split} images of {source}"


def run_report(
    config: ReportConfig, loaded: tuple[torch.nn.Module, dict] | None = None
) -> dict[str, Any]:
    """Evaluate ``config.checkpoint`` (or the ``(model, checkpoint)`` already
    ``loaded`` from it); write ``metrics.json`` and the PNG figures."""
    device = torch.device(config.device)
    model, checkpoint = loaded or load_checkpoint(config.checkpoint)
    model = model.to(device).eval()
    data = checkpoint.get("data", {})
    images, labels, described = load_images(
        config.data, config.split, config.images, data["mean"], data["std"], config.seed
    )
    if labels is None:
        with torch.inference_mode():
            labels = torch.cat(
                [model(chunk.to(device)).argmax(1).cpu() for chunk in images.split(256)]
            )
    baseline = None
    if config.timing:
        args = {**model.build_args, "filter": "delta", "downsample": "blur"}  # plain
        baseline = models.build(**args).to(device).eval()
    started = time.perf_counter()
    result = evaluate(
        model,
        images,
        labels,
        method=config.method,
        feature_images=config.feature_images,
        feature_max_shift=config.feature_shifts,
        baseline=baseline,
        timing_batch=100,
        seed=config.seed,
        progress=True,
    )
    label = f"{model.build_args['name']} {model.build_args['filter']}"
    metrics = {
        "checkpoint": str(config.checkpoint),
        "model": model.build_args,
        "data": described,
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 3),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "metrics": summary(result),
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    for name, figure in report_figures({label: result}).items():
        figure.savefig(config.out / f"{name}.png", dpi=120)
    return metrics
