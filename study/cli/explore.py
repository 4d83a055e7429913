"""``study demo``, ``study filters`` and ``study models``: the science at a glance,
without Ray, MLflow or Optuna."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.common import UsageError, check_out_dir


def configure_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)"
    )
    demo.add_argument("--model", default="vgg13_bn", help="network (see `study models`)")
    demo.add_argument(
        "--width", type=float, default=0.25, help="channel width multiplier (default: 0.25)"
    )
    demo.add_argument(
        "--filters",
        default=None,
        help="semicolon- or comma-separated filter specs, baseline first "
        "(default: delta,rect-2,triangle-3,binomial-5,binomial-7)",
    )
    demo.add_argument("--images", type=int, default=32, help="number of images (default: 32)")
    demo.add_argument(
        "--max-shift", type=int, default=8, help="shifts 0..N-1 in each direction (default: 8)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of images and weights")


def configure_filters(show: argparse.ArgumentParser) -> None:
    show.add_argument(
        "specs", nargs="*", metavar="SPEC", help="e.g. binomial-5 'firwin(taps=5, cutoff=0.4)'"
    )
    show.add_argument(
        "--plot", type=Path, help="write the frequency responses to this PNG/SVG/PDF file"
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")


def configure_models(models: argparse.ArgumentParser) -> None:
    """No arguments."""


def split_specs(text: str) -> tuple[str, ...]:
    """Filter specs separated by ';', or by ',' outside parentheses and brackets."""
    if ";" in text:
        parts = text.split(";")
    else:
        parts, depth, current = [], 0, ""
        for char in text:
            depth += (char in "([") - (char in ")]")
            if char == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
    return tuple(p.strip() for p in parts if p.strip())


def demo(args: argparse.Namespace) -> int:
    from study import filters, models
    from study.demo import DemoConfig, format_table, run_demo

    specs = DemoConfig().filters if args.filters is None else split_specs(args.filters)
    if not specs:
        raise UsageError("--filters: give at least one filter spec, e.g. delta,binomial-5")
    for spec in specs:
        try:
            filters.parse(spec)
        except filters.FilterSpecError as error:
            raise UsageError(str(error.under("--filters"))) from None
    if args.model not in models.MODELS:
        allowed = ", ".join(models.available_models())
        raise UsageError(f"--model: unknown network {args.model!r}; allowed: {allowed}")
    if not 0 < args.width <= 4:
        raise UsageError(f"--width: {args.width} is outside (0, 4]")
    if not 2 <= args.images <= 4096:
        raise UsageError(f"--images: {args.images} is outside 2 to 4096")
    if not 1 <= args.max_shift <= 32:
        raise UsageError(f"--max-shift: {args.max_shift} is outside 1 to 32")
    check_out_dir(args.out, "--out")
    config = DemoConfig(args.model, args.width, specs, args.images, args.max_shift, args.seed)
    results = run_demo(config, args.out)
    toy = results["toy_example"]
    print("Toy example (Section 3.2, Fig. 3): signal [0,0,1,1,0,0,1,1] and shifted by one")
    for name in ("delta", "triangle-3"):
        print(f"  {name:<11} {toy[name]}  shifted: {toy[name + ' shifted']}")
    print()
    print(f"Shift-invariance of a freshly initialised {args.model} (width {args.width}),")
    print(f"{args.images} pink-noise images, all {args.max_shift}x{args.max_shift} circular shifts")
    print("(feature distance, normalised by the distance between different images; 0 = invariant):")
    print(format_table(results))
    print(f"\nwrote {args.out / 'demo.json'} and {args.out / 'demo.png'}")
    return 0


def filters_command(args: argparse.Namespace) -> int:
    from study import filters

    if args.plot is not None:
        if args.plot.suffix.lower() not in {".png", ".svg", ".pdf"}:
            raise UsageError(f"--plot: {args.plot} must end in .png, .svg or .pdf")
        check_out_dir(args.plot.parent, "--plot")
    named = {str(s): s for s in filters.TABLE1.values()}
    if args.specs:
        named = {}
        for text in args.specs:
            try:
                spec = filters.parse(text)
            except filters.FilterSpecError as error:
                raise UsageError(str(error.under("SPEC"))) from None
            named[str(spec)] = spec
    rows = [filters.describe(spec) for spec in named.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'filter':<58} {'taps':>4} {'-3dB':>6} {'|H(Nyq)|':>8}  weights")
        for row in rows:
            weights = ", ".join(f"{w:.4f}" for w in row["weights"])
            numbers = f"{row['taps']:>4} {row['cutoff_3db']:>6.3f} {row['nyquist_gain']:>8.3f}"
            print(f"{row['filter']:<58} {numbers}  [{weights}]")
    if args.plot is not None:
        from study.filters.plot import plot_responses

        plot_responses(named.values()).savefig(args.plot, dpi=130)
        print(f"wrote {args.plot}")
    return 0


def models_command(args: argparse.Namespace) -> int:
    from study import models

    for name in models.available_models():
        model = models.build(name)
        params = sum(p.numel() for p in model.parameters())
        doc = (type(model).__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} {params / 1e6:6.2f} M params  {doc}")
    return 0
