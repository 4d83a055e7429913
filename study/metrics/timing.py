"""Forward-time overhead of anti-aliasing (Table 2), timed side by side.

All variants run interleaved, round after round, so that drift in the machine's speed
hits them alike; each variant's time is the median of its rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from study.metrics.shifts import check_images, evaluating, model_device


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds that ``fn()`` takes, waiting for the GPU where there is one."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(
    variants: Mapping[str, Callable[[], object]],
    rounds: int = 15,
    warmup: int = 3,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Median seconds per call of each variant, timed in interleaved rounds after
    ``warmup`` untimed ones."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds: need rounds >= 1 and warmup >= 0, got {rounds}, {warmup}")
    device = torch.device(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(warmup + rounds):
        for name, fn in variants.items():
            elapsed = timed(fn, device)
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def forward_overhead(
    model: nn.Module, baseline: nn.Module, images: Tensor, rounds: int = 15, warmup: int = 3
) -> dict[str, float]:
    """Table 2: forward time of ``model`` against ``baseline`` (the same network with
    ``filter="delta"``) on ``images`` ``(N, C, H, W)``, eval mode, on ``model``'s device.

    Returns ``model_ms`` and ``baseline_ms`` (medians per batch) and ``overhead``,
    ``model_ms / baseline_ms - 1`` (0.1 is 10% slower).
    """
    check_images(images)
    device = model_device(model)
    images = images.to(device)
    baseline = baseline.to(device)

    def forward(network: nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return network(images)

        return run

    with evaluating(model), evaluating(baseline):
        medians = interleaved_medians(
            {"model": forward(model), "baseline": forward(baseline)}, rounds, warmup, device
        )
    return {
        "model_ms": 1e3 * medians["model"],
        "baseline_ms": 1e3 * medians["baseline"],
        "overhead": medians["model"] / medians["baseline"] - 1,
    }
