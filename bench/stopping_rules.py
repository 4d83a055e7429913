"""Early-stopping rules on studies they were not tuned on: replays of recorded histories.

A stopping rule's quality is a property of the studies it meets, so this benchmark
measures rules on many studies (one per sampler seed) and reports the median and the
worst seed rather than one run. Two steps:

``collect``: train every trial of a study to its full budget once, in-process (the
trial code runs without Ray), and record each epoch's validation metrics and the final
objectives. The configurations are what ``study run`` asks for with the random sampler
and that seed (Optuna's ``RandomSampler``, define-by-run through the space), and a trial
is deterministic given its config, so a recorded study is the full-budget study the
service would have run. Spaces: ``shapes`` (the space of ``bench/early_stopping.py``:
VGG11-BN at 1/8 width, 6 filters x 2 augmentations x a log-uniform learning rate, 9
epochs on the built-in shapes data, 250 validation images) and ``cifar10`` (the same
dimensions on 3,000 images of the CIFAR-10 JPEG copy, 1,000 held out, 8 epochs).
``simulated`` studies need no collection: the simulated trial's closed forms, with
validation noise at the level the real studies show (``--noise``).

``replay``: run each rule through :class:`~study.service.scheduler.MultiObjectiveASHA`
over each recorded study, trials arriving one at a time in the order they were asked
(what one-at-a-time execution does; ``bench/early_stopping.py`` showed the real service
at concurrency 2 within a point of its replay). Per rule and seed: the hypervolume of
the trials it let finish over the full study's (reference (0, 0)), its share of the
full study's trial-epochs, and whether it stopped the full study's best trial in either
objective before half the budget. Then, per rule, the median and worst over the seeds
it was not tuned on.

    .venv/bin/python bench/stopping_rules.py collect --space shapes --seeds 0-7
    .venv/bin/python bench/stopping_rules.py collect --space cifar10 --seeds 0-4
    .venv/bin/python bench/stopping_rules.py replay --json bench/histories/replays.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study.metrics.names import PER_EPOCH  # noqa: E402 (after the path above)

OBJECTIVES = {"val_acc": "max", "val_consistency": "max"}
CIFAR = Path(
    os.environ.get("STUDY_CIFAR10_JPEG", ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz")
)
FILTERS = ["delta", "binomial-2", "binomial-3", "binomial-4", "binomial-5", "binomial-7"]
#: The targets a shipped default must meet on unseen seeds.
TARGET_HYPERVOLUME, TARGET_EPOCHS = 0.95, 0.45


def space(kind: str, seed: int) -> dict[str, Any]:
    """The search space of a recorded study (a ``study run`` space file, as a mapping)."""
    common = {
        "study": {"objectives": OBJECTIVES, "sampler": "random", "seed": seed, "trials": 32},
        "model": {"name": "vgg11_bn", "width": 0.125, "filter": {"choice": FILTERS}},
        "augment": {"kind": {"choice": ["none", "flip+shift"]}, "max_shift": 4},
        "train": {
            "epochs": 9,
            "batch_size": 64,
            "lr": {"loguniform": [0.005, 0.1]},
            "schedule": "cosine",
            "weight_decay": 5.0e-4,
        },
        "eval": {"images": 100, "feature_images": 0, "figures": "none"},
        "seed": 0,
        "device": "cpu",
    }
    if kind == "shapes":
        common["data"] = {
            "source": "shapes",
            "train_images": 500,
            "validation": 250,
            "test_images": 200,
        }
    elif kind == "cifar10":
        common["study"]["trials"] = 20
        common["train"]["epochs"] = 8
        common["train"]["batch_size"] = 128
        common["data"] = {
            "source": str(CIFAR),
            "train_images": 3000,
            "validation": 1000,
            "test_images": 200,
        }
    else:
        raise SystemExit(f"--space: {kind!r}; allowed: shapes, cifar10")
    return common


def asked_configs(kind: str, seed: int) -> list[dict[str, Any]]:
    """The trial configs ``study run`` asks for, in order (random sampler, ``seed``)."""
    import optuna

    from study.service.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searched = SearchSpace.parse(space(kind, seed), default_name=f"{kind}-{seed}")
    sampler = optuna.samplers.RandomSampler(seed=seed)
    optuna_study = optuna.create_study(directions=["maximize"] * 2, sampler=sampler)
    configs = []
    for _ in range(searched.settings.trials):
        trial = optuna_study.ask()
        configs.append(searched.sample(trial))
        optuna_study.tell(trial, [0.0, 0.0])
    return configs


def _train(args: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """One trial to its full budget (in a worker process, one torch thread)."""
    index, values = args
    from study.trial.config import from_mapping
    from study.trial.run import run_trial

    config = from_mapping(values)
    epochs: list[dict[str, float]] = []

    def report(row: dict[str, Any]) -> None:
        if not row.get("done"):
            epochs.append({k: float(row[k]) for k in PER_EPOCH if k in row})

    started = time.perf_counter()
    final = run_trial(config, report=report, progress=False, threads=1)
    return {
        "index": index,
        "params": {
            "filter": config.model.filter,
            "augment": config.augment.kind,
            "lr": config.train.lr,
        },
        "epochs": epochs,
        "final": [float(final[m]) for m in OBJECTIVES],
        "seconds": time.perf_counter() - started,
    }


def collect(kind: str, seeds: list[int], out: Path, workers: int) -> None:
    """Record a full-budget study per seed into ``out/<kind>-seed<k>.json`` (skipped
    when present)."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    for seed in seeds:
        path = out / f"{kind}-seed{seed}.json"
        if path.is_file():
            print(f"{path}: present, kept")
            continue
        configs = asked_configs(kind, seed)
        started = time.perf_counter()
        with context.Pool(workers) as pool:
            trials = list(
                tqdm(
                    pool.imap(_train, list(enumerate(configs))),
                    total=len(configs),
                    desc=f"{kind} seed {seed}",
                    unit="trial",
                )
            )
        record = {
            "space": kind,
            "seed": seed,
            "budget": space(kind, seed)["train"]["epochs"],
            "validation": space(kind, seed)["data"]["validation"],
            "trials": trials,
            "wall_s": time.perf_counter() - started,
            "machine": machine(),
        }
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(record))
        partial.replace(path)
        print(f"{path}: {len(trials)} trials, {record['wall_s']:.0f} s")


def simulated_study(seed: int, noise: float, trials: int = 32) -> dict[str, Any]:
    """A study of the simulated trial kind over the same dimensions, no training."""
    from study.trial.config import from_mapping
    from study.trial.simulated import epoch_row, final_metrics

    raw = space("shapes", seed)
    configs = asked_configs("shapes", seed)[:trials]
    budget = raw["train"]["epochs"]
    records = []
    for index, values in enumerate(configs):
        values = {
            **values,
            "seed": seed * 1000 + index,
            "simulate": {"enabled": True, "noise": noise},
        }
        config = from_mapping(values)
        final = final_metrics(config)
        rows = [epoch_row(config, epoch, final) for epoch in range(1, budget + 1)]
        records.append(
            {
                "index": index,
                "params": {"filter": config.model.filter, "augment": config.augment.kind},
                "epochs": [{k: float(r[k]) for k in PER_EPOCH if k in r} for r in rows],
                "final": [float(rows[-1][m]) for m in OBJECTIVES],
            }
        )
    return {
        "space": "simulated",
        "seed": seed,
        "budget": budget,
        "validation": raw["data"]["validation"],
        "trials": records,
    }


# -- replays ---------------------------------------------------------------------------


def hypervolume(points: list[list[float]]) -> float:
    from study.pareto.front import hypervolume as hv

    if not points:
        return 0.0
    return hv(np.array(points), list(OBJECTIVES.values()), np.zeros(len(OBJECTIVES)))


def replay(
    study: dict[str, Any], rule: dict[str, Any], gate: Callable[[list, int], bool] | None = None
) -> dict[str, Any]:
    """``rule`` (scheduler settings) over one recorded study: hypervolume ratio,
    trial-epoch share, and when the full study's best trial per objective was stopped.
    ``gate(finished, epoch)``, if given, says whether a rung at ``epoch`` judges at all
    (``finished``: the ``(epochs, final)`` of the trials that ran their full budget so
    far); a trial passes a rung the gate keeps closed."""
    from study.service.scheduler import MultiObjectiveASHA

    budget = study["budget"]
    scheduler = MultiObjectiveASHA(
        **{"metrics": OBJECTIVES, **rule},
        budget=budget,
        validation_images=study["validation"],
    )
    spent, kept, stopped_at, finished = 0, [], {}, []
    for trial in study["trials"]:
        trial_id = f"t{trial['index']:03d}"
        end = budget
        for epoch, row in enumerate(trial["epochs"], start=1):
            if gate is not None and not gate(finished, epoch):
                continue
            if not scheduler.judge(trial_id, {"epoch": epoch, **row}):
                end = epoch
                break
        spent += end
        stopped_at[trial["index"]] = end
        if end == budget:
            kept.append(trial["final"])
            finished.append((trial["epochs"], trial["final"]))
    everything = [t["final"] for t in study["trials"]]
    best_stopped = []
    for j, objective in enumerate(OBJECTIVES):
        best = max(study["trials"], key=lambda t: t["final"][j])
        if stopped_at[best["index"]] < budget / 2:
            best_stopped.append(objective)
    return {
        "hypervolume_ratio": hypervolume(kept) / hypervolume(everything),
        "epochs_ratio": spent / (len(study["trials"]) * budget),
        "best_stopped_early": best_stopped,
        "stopped_at": [stopped_at[t["index"]] for t in study["trials"]],
    }


def rank_correlations(study: dict[str, Any], metric: str = "val_acc") -> list[float]:
    """Spearman correlation of each epoch's ``metric`` (negated for a loss) with the
    final ``val_acc``: how well a rung at that epoch predicts the final ranking."""
    from scipy.stats import spearmanr

    final = [t["final"][0] for t in study["trials"]]
    sign = -1.0 if metric.endswith("_loss") else 1.0
    return [
        float(spearmanr([sign * t["epochs"][e][metric] for t in study["trials"]], final).statistic)
        for e in range(study["budget"])
    ]


def correlation_ranges(studies: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Per space and rung metric: the [lowest, highest] correlation over the seeds at
    each epoch (:func:`rank_correlations`)."""
    out: dict[str, dict[str, list]] = {}
    for kind in sorted({s["space"] for s in studies}):
        ours = [s for s in studies if s["space"] == kind]
        out[kind] = {}
        for metric in ("val_acc", "val_loss", "train_loss"):
            rows = np.array([rank_correlations(s, metric) for s in ours])
            out[kind][metric] = [
                [round(float(low), 2), round(float(high), 2)]
                for low, high in zip(rows.min(0), rows.max(0), strict=True)
            ]
    return out


def noise_level(study: dict[str, Any]) -> float:
    """The standard deviation of ``val_acc`` around a trial's own curve: each interior
    epoch against the mean of its neighbours (``v_e - (v_{e-1} + v_{e+1}) / 2`` has
    variance ``1.5 sigma^2`` for independent noise on a locally straight curve)."""
    residuals = [
        t["epochs"][e]["val_acc"]
        - (t["epochs"][e - 1]["val_acc"] + t["epochs"][e + 1]["val_acc"]) / 2
        for t in study["trials"]
        for e in range(1, study["budget"] - 1)
    ]
    return float(np.std(residuals) / math.sqrt(1.5))


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


VAL = {"val_acc": "max", "val_consistency": "max"}
LOSS = {"train_loss": "min", "val_consistency": "max"}
SMOOTHED = {"val_acc_avg3": "max", "val_consistency_avg3": "max"}
METRIC_NAMES = {
    "val metrics": VAL,
    "train_loss + val_consistency": LOSS,
    "val metrics averaged over 3 epochs": SMOOTHED,
}
#: The candidates (rung metrics, grace, eta, noise margin), the service's old and new
#: defaults among them. ``val_*_avg3``: the mean of the last three epochs' values
#: (computed here; the service has no such metric).
CANDIDATES = [
    ("val metrics", 1, 3, 0.0),  # the old default
    ("val metrics", 1, 2, 0.0),
    ("val metrics", 2, 3, 0.0),
    ("val metrics", 3, 2, 0.0),
    ("val metrics", 1, 3, 1.0),
    ("val metrics", 1, 3, 2.0),
    ("val metrics averaged over 3 epochs", 2, 3, 0.0),
    ("train_loss + val_consistency", 1, 2, 0.0),
    ("train_loss + val_consistency", 1, 3, 0.0),  # the default
    ("train_loss + val_consistency", 1, 4, 0.0),
    ("train_loss + val_consistency", 2, 3, 0.0),
    ("train_loss + val_consistency", 1, 3, 1.0),
]
RULES: dict[str, dict[str, Any]] = {
    f"{name}, grace {grace}, eta {eta}" + (f", confidence {z:g}" if z else ""): {
        "metrics": METRIC_NAMES[name],
        "grace": grace,
        "eta": eta,
        "confidence": z,
    }
    for name, grace, eta, z in CANDIDATES
}


def with_averages(study: dict[str, Any], window: int = 3) -> dict[str, Any]:
    """``study`` with ``val_acc_avg3`` and ``val_consistency_avg3`` in every epoch row."""
    for trial in study["trials"]:
        rows = trial["epochs"]
        for index, row in enumerate(rows):
            last = rows[max(0, index - window + 1) : index + 1]
            for metric in ("val_acc", "val_consistency"):
                row[f"{metric}_avg{window}"] = sum(r[metric] for r in last) / len(last)
    return study


def report(studies: list[dict[str, Any]], tuned: set[tuple[str, int]]) -> dict[str, Any]:
    """Every rule over every study; summary over the unseen seeds per space."""
    table: dict[str, Any] = {}
    for name, rule in RULES.items():
        rows = {(s["space"], s["seed"]): replay(s, rule) for s in studies}
        summary = {}
        for kind in sorted({s["space"] for s in studies}):
            unseen = [r for (k, seed), r in rows.items() if k == kind and (k, seed) not in tuned]
            if not unseen:
                continue
            hv = [r["hypervolume_ratio"] for r in unseen]
            ep = [r["epochs_ratio"] for r in unseen]
            summary[kind] = {
                "seeds": len(unseen),
                "hv_median": statistics.median(hv),
                "hv_worst": min(hv),
                "epochs_median": statistics.median(ep),
                "epochs_worst": max(ep),
                "best_stopped_early": sum(bool(r["best_stopped_early"]) for r in unseen),
                "meets_targets": min(hv) >= TARGET_HYPERVOLUME
                and statistics.median(ep) <= TARGET_EPOCHS,
            }
        table[name] = {
            "rule": rule,
            "summary": summary,
            "per_seed": {f"{k}:{seed}": r for (k, seed), r in rows.items()},
        }
    return table


def print_table(table: dict[str, Any]) -> None:
    kinds = sorted({k for row in table.values() for k in row["summary"]})
    for kind in kinds:
        print(
            f"\n{kind}, unseen seeds: hypervolume ratio median / worst, trial-epochs "
            "median / worst, seeds whose best trial (either objective) stopped before half"
        )
        for name, row in table.items():
            s = row["summary"].get(kind)
            if s is None:
                continue
            mark = "meets the hypervolume and epoch targets" if s["meets_targets"] else ""
            print(
                f"  {name:60s} {s['hv_median']:.3f} / {s['hv_worst']:.3f}   "
                f"{100 * s['epochs_median']:5.1f} % / {100 * s['epochs_worst']:5.1f} %   "
                f"{s['best_stopped_early']} of {s['seeds']}  {mark}"
            )


def figure(table: dict[str, Any], path: Path) -> None:
    """Per space: each rule's median trial-epoch share against its worst hypervolume
    ratio over the unseen seeds, with the targets' corner shaded."""
    from matplotlib.figure import Figure

    kinds = sorted({k for row in table.values() for k in row["summary"]})
    fig = Figure(figsize=(5.2 * len(kinds), 4.6), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        ax.axvspan(0, 100 * TARGET_EPOCHS, ymin=0, ymax=1, color="tab:green", alpha=0.06)
        ax.axhline(TARGET_HYPERVOLUME, color="grey", linestyle=":", linewidth=1)
        ax.axvline(100 * TARGET_EPOCHS, color="grey", linestyle=":", linewidth=1)
        for index, row in enumerate(table.values()):
            summary = row["summary"].get(kind)
            if summary is None:
                continue
            loss = "train_loss" in row["rule"]["metrics"]
            lost = summary["best_stopped_early"]
            ax.scatter(
                100 * summary["epochs_median"],
                summary["hv_worst"],
                marker="o" if loss else "s",
                color="tab:blue" if loss else "tab:orange",
                s=30 + 25 * (summary["seeds"] - lost),
                alpha=0.8,
            )
            ax.annotate(
                str(index + 1),
                (100 * summary["epochs_median"], summary["hv_worst"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        ax.set(
            xlabel="trial-epochs, median over unseen seeds (%)",
            ylabel="hypervolume kept, worst unseen seed",
            title=f"{kind}: circles rank by train_loss, squares by val metrics\n"
            "(larger: fewer seeds lost their best trial early)",
            xlim=(20, 102),
        )
        ax.title.set_fontsize(8)
    legend = "; ".join(f"{i + 1}: {name}" for i, name in enumerate(table))
    fig.suptitle(legend, fontsize=5.5, wrap=True)
    fig.savefig(path, dpi=110)


def machine() -> str:
    import torch

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} x {cpu}, Python {platform.python_version()}, torch {torch.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collecting = commands.add_parser("collect", help="record full-budget studies")
    collecting.add_argument("--space", choices=["shapes", "cifar10"], required=True)
    collecting.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 0,3,5")
    collecting.add_argument("--out", type=Path, default=ROOT / "bench" / "histories")
    collecting.add_argument("--workers", type=int, default=2, help="trials at a time")
    replaying = commands.add_parser("replay", help="replay every rule over the records")
    replaying.add_argument("--histories", type=Path, default=ROOT / "bench" / "histories")
    replaying.add_argument(
        "--tuned",
        action="append",
        default=None,
        help="studies the defaults were chosen on, SPACE:SEEDS, repeatable "
        "(default: shapes:0-2 and simulated:0-9)",
    )
    replaying.add_argument("--simulated", default="0-19", help="simulated seeds ('' for none)")
    replaying.add_argument(
        "--noise", type=float, default=None, help="simulated noise (default: measured)"
    )
    replaying.add_argument("--json", type=Path, help="write the whole table here")
    replaying.add_argument("--figure", type=Path, help="write the rules' figure here (PNG)")
    args = parser.parse_args()
    if args.command == "collect":
        if args.space == "cifar10" and not CIFAR.is_file():
            raise SystemExit(f"{CIFAR}: not found (the CIFAR-10 JPEG copy); cannot collect")
        collect(args.space, parse_seeds(args.seeds), args.out, args.workers)
        return
    studies = [
        with_averages(json.loads(p.read_text()))
        for p in sorted(args.histories.glob("*-seed*.json"))
    ]
    for study in studies:
        print(
            f"{study['space']} seed {study['seed']}: {len(study['trials'])} trials, "
            f"val_acc noise {noise_level(study):.4f}"
        )
    ranges = correlation_ranges(studies)
    for kind, metrics in ranges.items():
        print(f"{kind}: Spearman with the final val_acc after epoch 1, 2, ... (lowest, highest)")
        for metric, spans in metrics.items():
            print(f"  {metric:10s} " + " ".join(f"{lo:.2f}..{hi:.2f}" for lo, hi in spans))
    # The simulated trial's noise decays as exp(-3 e / E): scale the measured average
    # (over the interior epochs of the real shapes studies) back to its starting level.
    real_noise = [noise_level(s) for s in studies if s["space"] == "shapes"]
    decay = statistics.mean(math.exp(-3 * e / 9) for e in range(2, 9))
    noise = args.noise if args.noise is not None else statistics.median(real_noise) / decay
    print(f"simulated studies: noise {noise:.3f} (the real shapes studies' level)")
    if args.simulated:
        studies += [
            with_averages(simulated_study(seed, noise)) for seed in parse_seeds(args.simulated)
        ]
    tuned = set()
    for part in args.tuned or ["shapes:0-2", "simulated:0-9"]:
        kind, _, seeds = part.partition(":")
        tuned.update((kind, seed) for seed in parse_seeds(seeds))
    table = report(studies, tuned)
    print_table(table)
    if args.json:
        record = {
            "tuned_on": sorted(f"{kind}:{seed}" for kind, seed in tuned),
            "simulated_noise": noise,
            "correlations": ranges,
            "rules": table,
            "machine": machine(),
        }
        args.json.write_text(json.dumps(record, indent=1))
    if args.figure:
        figure(table, args.figure)


if __name__ == "__main__":
    main()
