"""What the shift families add to a trial's test-time evaluation.

A trial's final evaluation (:func:`study.metrics.evaluate`, as ``Training.finish``
calls it) is timed with the circular family only (today's: every circular shift by
polyphase, Fig. 4's maps on 8 images) and, on the same images in the same run, each
extra family at several grid sizes (``crop`` margins, ``subpixel`` steps). Printed per
network: seconds per image of each part and the ratio of the whole evaluation with the
families to the evaluation without them (the issue's limit: at most 2x at the
defaults).

Random-init networks, the classifier rescaled so the logits have standard deviation 1.5
(as bench/shift_eval.py); pink-noise images (the cost does not depend on the content).

Run: ``python bench/shift_families.py [--images 50] [--networks vgg13_bn:1,resnet20:0.25]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from study import models
from study.data import pink_noise
from study.metrics import evaluate
from study.metrics.families import crop_offsets, family_scores, subpixel_offsets
from study.metrics.features import feature_distance_maps
from study.trial.run import pin_threads

NETWORKS = "vgg13_bn:1.0,vgg13_bn:0.25,resnet20:1.0,resnet20:0.25"
FEATURE_IMAGES = 8  # eval.feature_images' default


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(name: str, width: float, count: int, margins, steps, device) -> dict[str, float]:
    """Seconds: ``features`` (Fig. 4's maps on 8 images: once per trial), then per
    image: ``circular`` (every circular shift), ``crop m=..``, ``subpixel q=..``."""
    torch.manual_seed(0)
    model = models.build(name, width=width, filter="binomial-3").to(device).eval()
    images = pink_noise(count, seed=1)
    with torch.no_grad():
        model.classifier.weight.mul_(1.5 / model(images.to(device)).std().item())
        labels = model(images.to(device)).argmax(1).cpu()
    evaluate(model, images[:4], labels[:4], feature_images=0, families=())  # warm-up
    # Fig. 4's maps cost minutes at width 1: timed on 2 images, scaled to the default 8
    # (the cost is one all-shift pass per image).
    seconds = {
        "features": timed(lambda: feature_distance_maps(model, images[:2])) * FEATURE_IMAGES / 2,
        "circular": timed(
            lambda: evaluate(model, images, labels, feature_images=0, families=("circular",))
        )
        / count,
    }
    for margin in margins:
        seconds[f"crop m={margin}"] = (
            timed(lambda m=margin: family_scores(model, images, labels, "crop", margin=m)) / count
        )
    for step in steps:
        seconds[f"subpixel q={step}"] = (
            timed(lambda q=step: family_scores(model, images, labels, "subpixel", steps=q)) / count
        )
    return seconds


def ratio(seconds: dict[str, float], margin: int, step: int, images: int, features: bool) -> str:
    """The trial's test-time evaluation of ``images`` images with the crop and subpixel
    families at (``margin``, ``step``) over the same without them."""
    base = images * seconds["circular"] + (seconds["features"] if features else 0.0)
    extra = images * (seconds[f"crop m={margin}"] + seconds[f"subpixel q={step}"])
    return f"{(base + extra) / base:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--images", type=int, default=16, help="images timed per network")
    parser.add_argument("--networks", default=NETWORKS, help="name:width,... ")
    parser.add_argument("--margins", default="1,2,4", help="crop margins to time")
    parser.add_argument("--steps", default="2,4", help="subpixel steps to time")
    parser.add_argument(
        "--grids", default="4:4,2:2,2:4", help="margin:steps pairs whose ratio is printed"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    pin_threads(args.threads)
    device = torch.device(args.device)
    margins = [int(m) for m in args.margins.split(",")]
    steps = [int(q) for q in args.steps.split(",")]
    grids = [tuple(int(v) for v in pair.split(":")) for pair in args.grids.split(",")]
    machine = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, {device} ({machine}), {torch.get_num_threads()} threads, "
        f"{args.images} pink-noise 32x32 images per network, binomial-3 blur"
    )
    print(
        f"\nfeatures: Fig. 4's maps on {FEATURE_IMAGES} images (timed on 2, x4), s per trial; "
        "the rest ms per "
        "image. Ratios: the test-time evaluation of N images with crop m and subpixel q over "
        "the same without them, with the feature maps (the default) and without"
    )
    header = ["network", "width", "features [s]", "circular"]
    header += [f"crop m={m} ({len(crop_offsets(m))})" for m in margins]
    header += [f"subpixel q={q} ({len(subpixel_offsets(q))})" for q in steps]
    for margin, step in grids:
        header += [f"m={margin},q={step} N=1000", "N=1000 no maps", "N=250"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for entry in args.networks.split(","):
        name, width = entry.split(":")
        seconds = measure(name, float(width), args.images, margins, steps, device)
        cells = [name, width, f"{seconds['features']:.1f}"]
        cells += [f"{1e3 * v:.1f}" for k, v in seconds.items() if k != "features"]
        for margin, step in grids:
            cells += [
                ratio(seconds, margin, step, 1000, True),
                ratio(seconds, margin, step, 1000, False),
                ratio(seconds, margin, step, 250, True),
            ]
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
