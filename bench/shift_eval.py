"""All-shift evaluation cost: naive (one forward pass per shifted image) against
polyphase (each subsampling phase once), and the time to evaluate every one of the
1024 circular shifts of CIFAR-10's test images.

Part 1 times both methods on the same images, interleaved round by round, for
VGG13-BN at 32x32 (the issue's >= 10x target) and the other networks, and checks that
they agree (random weights, the classifier rescaled so that the logits have standard
deviation 1.5: random-init probabilities are otherwise near uniform or saturated, and
agreement on those would prove little).

Part 2 runs polyphase over ``--images`` CIFAR-10 test images (the JPEG copy in
``../shared/data`` or ``$STUDY_CIFAR10_JPEG``; pink noise where it is absent) at a
small width and projects the time for all 10,000.

Run: ``python bench/shift_eval.py [--device cuda] [--images 10000]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from study import models
from study.data import load_split, pink_noise, to_float
from study.metrics import shift_probabilities
from study.metrics.timing import interleaved_medians

CIFAR_JPEG = Path(
    os.environ.get(
        "STUDY_CIFAR10_JPEG", Path(__file__).parents[1] / "../shared/data/cifar10-jpeg.tar.gz"
    )
)


def compare(name: str, width: float, spec: str, count: int, rounds: int, device) -> None:
    torch.manual_seed(0)
    model = models.build(name, width=width, filter=spec).to(device).eval()
    images = torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # logits with std 1.5: probabilities neither uniform nor 0/1
        model.classifier.weight.mul_(1.5 / model(images.to(device)).std().item())
    results = {}

    def run(method: str):
        def go():
            results[method] = shift_probabilities(model, images, method)

        return go

    medians = interleaved_medians(
        {m: run(m) for m in ("naive", "polyphase")}, rounds, warmup=1, device=device
    )
    error = (results["naive"] - results["polyphase"]).abs().max().item()
    naive, poly = (1e3 * medians[m] / count for m in ("naive", "polyphase"))
    print(
        f"| {name:<13} | {width:>5} | {spec:<10} | {naive:>13.1f} | {poly:>13.1f} "
        f"| {naive / poly:>7.1f}x | {error:>8.1e} |"
    )


def throughput(count: int, width: float, batch: int, device) -> None:
    if CIFAR_JPEG.is_file():
        pixels = load_split(CIFAR_JPEG, "test")[0]
        images, source = to_float(pixels[:count]), f"CIFAR-10 test ({CIFAR_JPEG.name})"
    else:
        images, source = pink_noise(count), "pink noise (CIFAR-10 JPEG copy not found)"
    torch.manual_seed(0)
    model = models.build("vgg13_bn", width=width, filter="binomial-5").to(device).eval()
    shift_probabilities(model, images[:batch], "polyphase", batch)  # warm-up
    start = time.perf_counter()
    probs = shift_probabilities(model, images, "polyphase", batch, progress=True)
    seconds = time.perf_counter() - start
    per_image = seconds / len(images)
    print(
        f"\nvgg13_bn width {width} binomial-5, {len(images)} images of {source}, all 1024 "
        f"shifts by polyphase: {seconds:.1f} s ({1e3 * per_image:.1f} ms per image, "
        f"{len(images) / seconds:.1f} images/s); 10,000 images: {10_000 * per_image / 60:.1f} "
        f"min{' (measured)' if len(images) == 10_000 else ' (projected)'}"
    )
    assert probs.shape == (len(images), 32, 32, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compare-images", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=500, help="images for part 2 (0 skips it)")
    parser.add_argument("--width", type=float, default=0.25, help="width for part 2")
    parser.add_argument("--batch", type=int, default=16, help="polyphase images per pass")
    parser.add_argument("--networks", default="all", help="part 1: 'all' or 'small' (widths < 1)")
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
    print(
        f"\nAll 1024 shifts of {args.compare_images} random 32x32 images, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(
        "| network       | width | filter     | naive [ms/im] | poly. [ms/im] | speedup "
        "| max diff |"
    )
    print(f"|{'-' * 15}|{'-' * 7}|{'-' * 12}|{'-' * 15}|{'-' * 15}|{'-' * 9}|{'-' * 10}|")
    for network, width in (
        ("vgg13_bn", 1.0),
        ("vgg13_bn", 0.25),
        ("resnet20", 1.0),
        ("resnet20", 0.25),
        ("densenet40_12", 0.25),
        ("resnet18", 0.25),
    ):
        if args.networks == "small" and width >= 1:
            continue
        for spec in ("delta", "binomial-5"):
            compare(network, width, spec, args.compare_images, args.rounds, device)
    if args.images:
        throughput(args.images, args.width, args.batch, device)


if __name__ == "__main__":
    main()
