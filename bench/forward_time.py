"""Forward-time overhead of anti-aliasing, in the layout of the paper's Table 2.

Part 1: VGG13-BN (CIFAR, 32x32, batch 100 as in the paper) with plain max-pooling,
with dense max-pooling then subsampling (filter ``delta`` through the blur layer), and
with dense pooling plus a 3, 5 and 7-tap binomial blur, and with adaptive polyphase
sampling (APS, ``model.downsample: aps``) without and with a 3-tap blur, the ideal
Fourier low-pass (``ideal``) and the content-aware filter (``adaptive``). Part 2: one
blur-downsample layer, our separable two-pass blur against the direct K x K depthwise convolution
that antialiased-cnns uses, on the same input.

All variants run interleaved, round after round, in one process, so that drift in
the machine's speed hits them alike; the tables give medians and ratios measured
side by side. Run: ``python bench/forward_time.py [--device cuda] [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import functools
import platform

import torch

from study import models
from study.convert import antialias
from study.filters import design
from study.layers import blur_pool2d
from study.metrics.timing import interleaved_medians


def vgg_table(batch: int, rounds: int, warmup: int, device: torch.device) -> None:
    torch.manual_seed(0)
    baseline = models.build("vgg13_bn", filter="delta").to(device).eval()
    state = baseline.state_dict()
    networks = {"Baseline": baseline}
    dense = models.build("vgg13_bn", filter="delta")
    networks["+ dense pool"] = antialias(dense, "delta", "circular", log=False).to(device).eval()
    for taps in (3, 5, 7):
        network = models.build("vgg13_bn", filter=f"binomial-{taps}")
        network.load_state_dict(state)
        networks[f"+ dense pool + {taps}x{taps} filter"] = network.to(device).eval()
    for spec, label in (("delta", "APS (no filter)"), ("binomial-3", "APS + 3x3 filter")):
        # Adaptive polyphase sampling (Chaman & Dokmanic): the phase of largest norm
        # instead of phase 0 after the (blurred) dense pooling.
        network = models.build("vgg13_bn", filter=spec, downsample="aps")
        network.load_state_dict(state)
        networks[label] = network.to(device).eval()
    # The ideal Fourier low-pass (no parameters: the same state dict loads) and the
    # content-aware filter of Zou et al. (its predictors are new parameters).
    ideal = models.build("vgg13_bn", downsample="ideal", ideal_cutoff=0.5)
    ideal.load_state_dict(state)
    networks["ideal low-pass (cutoff 0.5)"] = ideal.to(device).eval()
    adaptive = models.build("vgg13_bn", downsample="adaptive", adaptive_taps=3, adaptive_groups=2)
    adaptive.load_state_dict(state, strict=False)
    networks["content-aware 3x3, 2 groups"] = adaptive.to(device).eval()
    images = torch.randn(batch, 3, 32, 32, device=device)

    def forward(network):
        def run():
            with torch.inference_mode():
                network(images)

        return run

    medians = interleaved_medians(
        {k: forward(v) for k, v in networks.items()}, rounds, warmup, device
    )
    base = medians["Baseline"]
    print(f"\nVGG13-BN forward, batch {batch} of 32x32, median of {rounds} interleaved rounds")
    print(f"| {'Model':<30} | {'Timing [ms]':>11} | {'% added':>8} |")
    print(f"|{'-' * 32}|{'-' * 13}|{'-' * 10}|")
    for name, seconds in medians.items():
        print(f"| {name:<30} | {seconds * 1e3:>11.2f} | {100 * (seconds / base - 1):>+7.2f}% |")


def blur_table(rounds: int, warmup: int, device: torch.device) -> None:
    x = torch.randn(100, 128, 32, 32, device=device)
    print("\nOne blur-downsample layer (stride 2, reflect padding), input 100x128x32x32")
    header = f"{'separable [ms]':>14} | {'direct KxK [ms]':>15} | {'direct / separable':>18}"
    print(f"| {'taps':>4} | {header} |")
    print(f"|{'-' * 6}|{'-' * 16}|{'-' * 17}|{'-' * 20}|")
    for size in (3, 5, 7):
        taps = torch.as_tensor(design(f"binomial-{size}"), dtype=torch.float32, device=device)
        variants = {
            # antialiased-cnns' BlurPool is the direct form: pad, one K x K depthwise conv
            name: functools.partial(_blur_once, x, taps, separable)
            for name, separable in (("separable", True), ("direct", False))
        }
        medians = interleaved_medians(variants, rounds, warmup, device)
        separable, direct = medians["separable"] * 1e3, medians["direct"] * 1e3
        print(
            f"| {size:>4} | {separable:>14.2f} | {direct:>15.2f} | {direct / separable:>17.2f}x |"
        )


def _blur_once(x: torch.Tensor, taps: torch.Tensor, separable: bool) -> None:
    with torch.inference_mode():
        blur_pool2d(x, taps, 2, "reflect", separable=separable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"torch {torch.__version__}, device {device} ({name}), "
        f"{torch.get_num_threads()} CPU threads, python {platform.python_version()}"
    )
    vgg_table(args.batch, args.rounds, args.warmup, device)
    blur_table(args.rounds, args.warmup, device)


if __name__ == "__main__":
    main()
