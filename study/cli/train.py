"""``study trial`` and ``study report``: one configuration trained, one checkpoint
evaluated, without Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.cli.common import UsageError, check_out_dir, set_flag


def configure_trial(trial: argparse.ArgumentParser) -> None:
    trial.add_argument(
        "config",
        type=Path,
        metavar="CONFIG",
        help="YAML trial config or search-space file with every choice fixed",
    )
    set_flag(trial, "train.lr=0.05", "config")
    trial.add_argument(
        "--out", type=Path, required=True, help="output folder (resumed if it holds a checkpoint)"
    )
    trial.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def configure_report(report: argparse.ArgumentParser) -> None:
    report.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a .pt checkpoint")
    report.add_argument("--out", type=Path, required=True, help="output folder")
    report.add_argument(
        "--data",
        default="noise",
        help="cifar10, cifar100 (downloaded), a CIFAR folder (cifar-10-batches-py), "
        "an image-folder tree or its .tar.gz, "
        "or 'noise' for pink noise labelled by the model itself (default: noise)",
    )
    report.add_argument("--split", default="test", help="train or test (default: test)")
    report.add_argument(
        "--images", type=int, default=1000, help="images to evaluate, 0 = all (default: 1000)"
    )
    report.add_argument(
        "--method",
        default="auto",
        help="all-shift evaluation: auto, polyphase or naive (default: auto)",
    )
    report.add_argument(
        "--feature-images",
        type=int,
        default=8,
        help="images for the per-layer distance maps, 0 = skip (default: 8)",
    )
    report.add_argument(
        "--feature-shifts",
        type=int,
        default=None,
        help="distance maps over shifts 0..N-1 (default: all H x W)",
    )
    report.add_argument(
        "--no-timing", action="store_true", help="skip the forward-time overhead (Table 2)"
    )
    report.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    report.add_argument("--seed", type=int, default=0, help="seed of image choice and shifts")


def trial(args: argparse.Namespace) -> int:
    from study.data import describe_source
    from study.data.names import NAMED_SOURCES
    from study.trial.documents import load_config
    from study.trial.run import TrialFailed, resolve_device, run_trial

    config, _ = load_config(args.config, args.overrides)  # ConfigError: one line, exit 2
    if config.data.source not in NAMED_SOURCES:
        try:
            describe_source(Path(config.data.source).expanduser())
        except ValueError as error:
            raise UsageError(f"data.source: {str(error).removeprefix('data: ')}") from None
    resolve_device(config.device)
    check_out_dir(args.out, "--out")
    try:
        final = run_trial(config, args.out, progress=not args.quiet)
    except TrialFailed as error:
        print(f"study: trial failed: {error.reason}", file=sys.stderr)
        return 1
    if "val_acc" in final:
        print(
            f"validation: val_acc {final['val_acc']:.4f}  "
            f"val_consistency {final['val_consistency']:.4f}  "
            f"({config.eval.val_method}, last epoch)"
        )
    print(
        f"test: test_acc {final['test_acc']:.4f}  test_consistency {final['test_consistency']:.4f}"
        f"  ({final['eval_images']} images x {final['eval_shifts']} shifts, "
        f"{final['eval_method']})"
    )
    for family in config.eval.families:
        scores = "  ".join(
            f"{score} {final[f'test_{score}_{family}']:.4f}"
            for score in ("consistency", "acc_worst", "acc_mean")
        )
        print(f"  {family:<9} {scores}")
    print(f"wrote {args.out / 'metrics.json'}, checkpoint and figures in {args.out}")
    return 0


def report(args: argparse.Namespace) -> int:
    from study.data import describe_source
    from study.data.names import DOWNLOADABLE
    from study.metrics import METHODS
    from study.trial.checkpoint import CheckpointError, load_checkpoint
    from study.trial.report import NOISE, ReportConfig, run_report

    if args.method not in METHODS:
        raise UsageError(f"--method: {args.method!r} is not one of {', '.join(METHODS)}")
    if args.split not in ("train", "test"):
        raise UsageError(f"--split: {args.split!r} is not one of train, test")
    if args.images < 0 or (args.data == NOISE and not 2 <= (args.images or 1000) <= 100_000):
        raise UsageError(f"--images: {args.images} must be 0 (all) or a positive count")
    if args.feature_images == 1 or args.feature_images < 0:
        raise UsageError(f"--feature-images: {args.feature_images} must be 0 (skip) or >= 2")
    if args.feature_shifts is not None and not 1 <= args.feature_shifts <= 512:
        raise UsageError(f"--feature-shifts: {args.feature_shifts} is outside 1 to 512")
    device = _device(args.device)
    if args.data not in (NOISE, *DOWNLOADABLE):
        describe_source(Path(args.data).expanduser())  # DataSourceError: one line, exit 2
    check_out_dir(args.out, "--out")
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    config = ReportConfig(
        args.checkpoint,
        args.out,
        args.data,
        args.split,
        args.images,
        args.method,
        args.feature_images,
        args.feature_shifts,
        not args.no_timing,
        str(device),
        args.seed,
    )
    metrics = run_report(config, loaded)["metrics"]
    print(
        f"{config.checkpoint}: {metrics['images']} images x {metrics['shifts']} shifts "
        f"({metrics['shift_method']}, {metrics['shift_seconds']:.1f} s)"
    )
    for key in ("acc", "acc_shift_random", "consistency", "variation"):
        print(f"  {key:<17} {metrics[key]:.4f}")
    if "timing_overhead" in metrics:
        print(f"  {'forward overhead':<17} {100 * metrics['timing_overhead']:+.1f}% vs delta")
    print(f"wrote {config.out / 'metrics.json'} and figures in {config.out}")
    return 0


def _device(text: str):
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device: {text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: {text} asked for, but this machine has no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: {text!r} is not supported; use cpu, cuda or cuda:N")
    return device
