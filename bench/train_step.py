"""One SGD step of VGG13-BN with only its pooling swapped: our blur layers against
``nn.MaxPool2d(2, 2)``, antialiased-cnns and kornia.

Variants (all five pools of the network replaced, same weights, same batch):

* ``MaxPool2d(2,2)``: the unblurred baseline;
* ``antialiased-cnns``: ``MaxPool2d(2, 1)`` + ``BlurPool(C, filt_size=5)`` (its reflect
  padding fails on VGG's last 2x2 map, so replicate padding: ``pad_type="repl"``);
* ``kornia``: ``kornia.filters.MaxBlurPool2D(5)``;
* ``ours old <padding>``: ``tests/reference_layers.py`` (the layers before the fast path);
* ``ours <padding>``: ``study.layers.MaxBlurPool2d(C, "binomial-5", padding=...)``;

for circular and reflect padding. Missing optional packages (``antialiased_cnns``,
``kornia``) are skipped with a message. Variants alternate, one step each per round;
the table gives the median time per step and the ratio to the baseline's median.

Run: ``python bench/train_step.py [--quick] [--threads 2] [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.reference_layers

from smoke_study import machine  # bench/ is this script's folder: on sys.path

from study import models
from study.layers import MaxBlurPool2d, make_taps
from tests import reference_layers

CONFIGS = ((0.25, 128), (1.0, 64))  # (width, batch)


class ReferenceMaxBlurPool(nn.Module):
    """``MaxBlurPool2d`` as it was: the conv path of tests/reference_layers.py."""

    def __init__(self, filter: str, padding: str) -> None:
        super().__init__()
        self.lowpass = make_taps(filter)
        self.padding = padding

    def forward(self, x):
        return reference_layers.max_blur_pool2d(x, self.lowpass(), 2, 2, self.padding)


def pools() -> dict[str, Callable[[int], nn.Module]]:
    """Name -> factory taking the channel count, for every variant that can run here."""
    made: dict[str, Callable[[int], nn.Module]] = {"MaxPool2d(2,2)": lambda c: nn.MaxPool2d(2, 2)}
    try:
        import antialiased_cnns

        made["antialiased-cnns"] = lambda c: nn.Sequential(
            nn.MaxPool2d(2, 1), antialiased_cnns.BlurPool(c, pad_type="repl", filt_size=5)
        )
    except ImportError:
        print("skipped antialiased-cnns: `pip install antialiased-cnns` to compare with it")
    try:
        from kornia.filters import MaxBlurPool2D

        made["kornia"] = lambda c: MaxBlurPool2D(5)
    except ImportError:
        print("skipped kornia: `pip install kornia` to compare with it")
    for padding in ("circular", "reflect"):
        made[f"ours old {padding}"] = lambda c, p=padding: ReferenceMaxBlurPool("binomial-5", p)
        made[f"ours {padding}"] = lambda c, p=padding: MaxBlurPool2d(c, "binomial-5", padding=p)
    return made


def swap_pools(model: nn.Module, factory: Callable[[int], nn.Module]) -> nn.Module:
    """A copy of ``model`` with every ``nn.MaxPool2d`` made by ``factory(channels)``."""
    model = copy.deepcopy(model)
    channels, targets = 3, []
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.Conv2d):
                channels = child.out_channels
            elif isinstance(child, nn.MaxPool2d):
                targets.append((module, name, channels))
    for module, name, channels in targets:
        setattr(module, name, factory(channels))
    return model


def step(model, optimizer, images, labels) -> None:
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(width: float, batch: int, rounds: int) -> None:
    torch.manual_seed(0)
    base = models.build("vgg13_bn", width=width).train()
    images = torch.randn(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))
    runs = {}
    for name, factory in pools().items():
        model = swap_pools(base, factory)
        runs[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(rounds + 1):  # round 0 warms up (caches, allocator)
        for name, (model, optimizer) in runs.items():
            start = time.perf_counter()
            step(model, optimizer, images, labels)
            if round_index:
                times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times["MaxPool2d(2,2)"])
    print(f"\nVGG13-BN width {width}, batch {batch}, 32x32, median of {rounds} rounds")
    print("| pooling            | ms / step | vs MaxPool2d |")
    print(f"|{'-' * 20}|{'-' * 11}|{'-' * 14}|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name:<18} | {median * 1e3:>9.1f} | {median / baseline:>11.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else args.rounds
    print(f"{machine()}, {torch.get_num_threads()} torch threads")
    for width, batch in CONFIGS:
        measure(width, batch, rounds)


if __name__ == "__main__":
    main()
