"""Early stopping: MO-ASHA against full budgets, through the real service.

Two studies of one search space, the same random sampler and seed, run by ``study run``
on a local Ray instance with a local MLflow (SQLite) store: one trains every trial for
the whole budget, the other sets ``study.scheduler`` (MO-ASHA; its rung metrics are
``--metrics`` or the service's default). With a random sampler both studies ask for the
same configurations in the same order, and a trial's training is deterministic given
its config, so the comparison isolates the scheduler. Then it reads MLflow back and
plots the hypervolume of the complete trials (fixed reference point) against the
trial-epochs consumed so far (every epoch any trial trained, counted at the time it was
logged), and prints the ratios: final hypervolume, trial-epochs, wall clock.

It also replays the full study's per-epoch histories through
:class:`~study.service.scheduler.MultiObjectiveASHA` with other ``grace``/``eta``
settings (trials one at a time, in the order they started): what each setting would
have kept and spent, without training anything again.

Run it under the lock every Ray user on the machine takes::

    flock /tmp/study-ray.lock .venv/bin/python bench/early_stopping.py --out /tmp/es
    flock /tmp/study-ray.lock .venv/bin/python bench/early_stopping.py --out /tmp/es --measure

``--measure`` runs one full-budget trial and prints what the two studies would take;
``--analyse`` re-reads an earlier run's MLflow store without training; ``--again``
keeps OUT's full-budget study and runs MO-ASHA once more with other ``--grace``/``--eta``
(the sampler gives it the same configurations). ``--metrics`` names the rung metrics
(default: the service's, ``train_loss`` and ``val_consistency`` for these objectives).

``--against HISTORY`` runs the MO-ASHA study only and checks it against the replay of a
full study that ``bench/stopping_rules.py collect`` recorded with the same seed: the
same trials complete, stopped at the same rungs, the same trial-epochs (up to the order
in which two concurrent trials reach a rung).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = {"val_acc": "max", "val_consistency": "max"}
#: The fixed hypervolume reference points: the service's default (0 for fractions to
#: maximise), and a stricter one that weighs consistency differences more.
REFERENCES = {"default (0, 0)": (0.0, 0.0), "strict (0.5, 0.9)": (0.5, 0.9)}


def space(args: argparse.Namespace) -> dict[str, Any]:
    """6 filters x 2 augmentations x a log-uniform learning rate, VGG11-BN at 1/8 width
    on a few hundred images of the built-in shapes data."""
    return {
        "study": {
            "objectives": OBJECTIVES,
            "sampler": "random",
            "seed": args.seed,
            "trials": args.trials,
            "concurrent": args.concurrent,
            "cpus": 1,
            "retries": 1,
        },
        "model": {
            "name": "vgg11_bn",
            "width": 0.125,
            "filter": {
                "choice": [
                    "delta",
                    "binomial-2",
                    "binomial-3",
                    "binomial-4",
                    "binomial-5",
                    "binomial-7",
                ]
            },
        },
        "data": {
            "source": "shapes",
            "train_images": args.train_images,
            "validation": args.validation,
            "test_images": 200,
        },
        "augment": {"kind": {"choice": ["none", "flip+shift"]}, "max_shift": 4},
        "train": {
            "epochs": args.epochs,
            "batch_size": 64,
            "lr": {"loguniform": [0.005, 0.1]},
            "schedule": "cosine",
            "weight_decay": 5.0e-4,
        },
        "eval": {"images": 100, "feature_images": 0},
        "seed": 0,
        "device": "cpu",
    }


def study_run(out: Path, name: str, extra: list[str]) -> float:
    """``study run`` in a subprocess (its own local Ray instance); wall seconds."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}",
        "STUDY_STORAGE_PATH": str(out / "ray_results"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "study", "run", str(out / "space.yaml"), "--name", name]
    started = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.run(
            [*command, *extra], cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        sys.exit(f"{name}: study run exited {code}; see {out / (name + '.log')}")
    return seconds


def read_study(uri: str, name: str) -> dict[str, Any]:
    """Every trial of ``name`` from MLflow: state, epochs (with the time each was
    logged), final objectives, test metrics, config; and the parent's wall time."""
    import mlflow

    from study.mlflow_layout import child_runs, final_metrics, find_parent, metric_key, trial_state

    client = mlflow.MlflowClient(uri)
    parent = find_parent(client, name)
    trials = []
    for run in child_runs(uri, parent.info.run_id):
        history = client.get_metric_history(run.info.run_id, metric_key("train_loss"))
        per_epoch = {
            name: {
                m.step: m.value
                for key in (metric_key(name), name)  # this layout, then the one before
                for m in client.get_metric_history(run.info.run_id, key)
            }
            for name in OBJECTIVES
        }
        metrics = final_metrics(run.data.metrics)
        trials.append(
            {
                "trial_id": run.data.tags.get("study.trial_id"),
                "state": trial_state(run),
                "config": [
                    run.data.params.get(k) for k in ("model.filter", "augment.kind", "train.lr")
                ],
                "start": run.info.start_time / 1000,
                "end": (run.info.end_time or 0) / 1000,
                "epoch_times": sorted(m.timestamp / 1000 for m in history),
                "per_epoch": {k: {int(s): v for s, v in d.items()} for k, d in per_epoch.items()},
                "objectives": [metrics.get(m) for m in OBJECTIVES],
                "test": [metrics.get("test_acc"), metrics.get("test_consistency")],
                "stopped_at": run.data.tags.get("study.stopped_at_epoch"),
            }
        )
    trials.sort(key=lambda t: t["start"])
    wall = (parent.info.end_time - parent.info.start_time) / 1000
    return {"name": name, "trials": trials, "parent_wall_s": wall}


def hv(points: list[list[float]], reference: tuple[float, float]) -> float:
    from study.pareto.front import hypervolume

    if not points:
        return 0.0
    return hypervolume(np.array(points), list(OBJECTIVES.values()), np.array(reference))


def curve(study: dict[str, Any], reference: tuple[float, float]) -> list[tuple[float, float]]:
    """(trial-epochs consumed, hypervolume of the complete trials) after every completion."""
    epoch_times = np.sort(np.concatenate([t["epoch_times"] for t in study["trials"]]))
    done = sorted((t for t in study["trials"] if t["state"] == "FINISHED"), key=lambda t: t["end"])
    points, out = [], [(0.0, 0.0)]
    for trial in done:
        points.append(trial["objectives"])
        consumed = float(np.searchsorted(epoch_times, trial["end"], side="right"))
        out.append((consumed, hv(points, reference)))
    out.append((float(len(epoch_times)), out[-1][1]))
    return out


def summary(full: dict[str, Any], early: dict[str, Any]) -> dict[str, Any]:
    """The ratios, per reference point."""
    epochs = {s["name"]: sum(len(t["epoch_times"]) for t in s["trials"]) for s in (full, early)}
    result: dict[str, Any] = {
        "trials": {s["name"]: len(s["trials"]) for s in (full, early)},
        "complete": {
            s["name"]: sum(t["state"] == "FINISHED" for t in s["trials"]) for s in (full, early)
        },
        "stopped": {
            s["name"]: sum(t["state"] == "PRUNED" for t in s["trials"]) for s in (full, early)
        },
        "trial_epochs": epochs,
        "trial_epochs_ratio": epochs[early["name"]] / epochs[full["name"]],
        "references": {},
    }
    for label, reference in REFERENCES.items():
        final_full = curve(full, reference)[-1][1]
        mo = curve(early, reference)
        reached = next((x for x, y in mo if y >= 0.95 * final_full), None)
        result["references"][label] = {
            "reference": reference,
            "hypervolume_full": final_full,
            "hypervolume_mo_asha": mo[-1][1],
            "hypervolume_ratio": mo[-1][1] / final_full if final_full else float("nan"),
            "epochs_to_95pct": reached,
            "epochs_to_95pct_ratio": None if reached is None else reached / epochs[full["name"]],
        }
    test = {}
    for s in (full, early):
        points = [t["test"] for t in s["trials"] if t["state"] == "FINISHED"]
        test[s["name"]] = hv(points, (0.0, 0.0))
    result["test_hypervolume_default_reference"] = test
    return result


def replay(full: dict[str, Any], grace: int, eta: int, budget: int) -> dict[str, float]:
    """MO-ASHA with ``grace``/``eta`` on the full study's per-epoch histories, one trial
    at a time in start order: trial-epochs spent and the hypervolume kept."""
    from study.service.scheduler import MultiObjectiveASHA

    scheduler = MultiObjectiveASHA(metrics=OBJECTIVES, grace=grace, eta=eta, budget=budget)
    spent, kept = 0, []
    for trial in full["trials"]:
        if trial["state"] != "FINISHED":
            continue
        stopped_at = budget
        for rung in scheduler.rung_epochs():
            values = [trial["per_epoch"][m][rung] for m in OBJECTIVES]
            if not scheduler.decide(trial["trial_id"], rung, values).kept:
                stopped_at = rung
                break
        spent += stopped_at
        if stopped_at == budget:
            kept.append(trial["objectives"])
    all_points = [t["objectives"] for t in full["trials"] if t["state"] == "FINISHED"]
    total = len(all_points) * budget
    ratios = {}
    for label, reference in REFERENCES.items():
        ratios[label] = hv(kept, reference) / hv(all_points, reference)
    return {"grace": grace, "eta": eta, "epochs_ratio": spent / total, "hypervolume_ratio": ratios}


def figure(full: dict[str, Any], early: dict[str, Any], path: Path, args: argparse.Namespace):
    from matplotlib.figure import Figure

    reference = REFERENCES["default (0, 0)"]
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    mo_asha = f"MO-ASHA (grace {args.grace}, eta {args.eta})"
    for study, label, colour in ((full, "full budgets", "tab:blue"), (early, mo_asha, "tab:red")):
        xs, ys = zip(*curve(study, reference), strict=True)
        ax.step(xs, ys, where="post", label=label, color=colour)
    final = curve(full, reference)[-1]
    low = 0.6 * final[1]  # the first complete trial jumps from 0; zoom on the rest
    ax.axhline(0.95 * final[1], color="grey", linestyle=":", linewidth=1)
    ax.axvline(0.40 * final[0], color="grey", linestyle="--", linewidth=1)
    ax.text(0.40 * final[0], low + 0.01 * final[1], " 40 % of full trial-epochs", fontsize=7)
    ax.text(final[0], 0.95 * final[1], "95 % of full hypervolume", fontsize=7, ha="right")
    ax.set(
        xlabel="trial-epochs consumed",
        ylabel="hypervolume of complete trials\n(val_acc, val_consistency; ref 0, 0)",
        title=f"{len(full['trials'])} trials of {args.epochs} epochs, sampler seed {args.seed}",
        ylim=(low, 1.03 * final[1]),
    )
    ax.legend(loc="center right")
    fig.savefig(path, dpi=90)


def against(args: argparse.Namespace, out: Path, scheduler: str) -> None:
    """The MO-ASHA study through the service against the replay of a recorded one."""
    sys.path.insert(0, str(ROOT / "bench"))
    from stopping_rules import replay

    recorded = json.loads(args.against.read_text())
    args.seed, args.trials = recorded["seed"], len(recorded["trials"])
    (out / "space.yaml").write_text(yaml.safe_dump(space(args), sort_keys=False))
    name = f"es-against-seed{args.seed}"
    seconds = study_run(out, name, ["--set", scheduler])
    served = read_study(f"sqlite:///{out / 'mlflow.db'}", name)
    rule = {"grace": args.grace, "eta": args.eta}
    if args.metrics:
        rule["metrics"] = {
            m: "min" if m.endswith("_loss") else "max" for m in args.metrics.split(",")
        }
    else:
        rule["metrics"] = {"train_loss": "min", "val_consistency": "max"}
    replayed = replay(recorded, rule)

    def key(filter_: str, augment: str, lr: float) -> tuple[str, str, str]:
        return (filter_, augment, f"{float(lr):.6g}")

    stopped_replay = {
        key(t["params"]["filter"], t["params"]["augment"], t["params"]["lr"]): at
        for t, at in zip(recorded["trials"], replayed["stopped_at"], strict=True)
    }
    stopped_served = {
        key(*t["config"]): (int(t["stopped_at"]) if t["stopped_at"] else recorded["budget"])
        for t in served["trials"]
    }
    epochs = sum(len(t["epoch_times"]) for t in served["trials"])
    total = len(recorded["trials"]) * recorded["budget"]
    same = sum(stopped_served.get(k) == v for k, v in stopped_replay.items())
    result = {
        "seed": args.seed,
        "scheduler": scheduler,
        "wall_s": seconds,
        "served": {
            "epochs_ratio": epochs / total,
            "complete": sum(t["state"] == "FINISHED" for t in served["trials"]),
        },
        "replayed": {k: replayed[k] for k in ("epochs_ratio", "hypervolume_ratio")},
        "trials_decided_alike": f"{same} of {len(stopped_replay)}",
        "machine": machine(),
    }
    (out / f"against-seed{args.seed}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def machine() -> str:
    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} x {cpu}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, load average {load:.1f} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="an empty folder for the run")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--validation", type=int, default=250)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--grace", type=int, default=2, help="MO-ASHA: epochs to rung 1")
    parser.add_argument("--eta", type=int, default=3, help="MO-ASHA: reduction factor")
    parser.add_argument("--metrics", help="rung metrics, e.g. val_acc,val_consistency")
    parser.add_argument("--against", type=Path, help="a recorded full study to replay")
    parser.add_argument("--figure", type=Path, help="where to write the PNG")
    parser.add_argument("--measure", action="store_true", help="time one full trial only")
    parser.add_argument("--analyse", action="store_true", help="read an earlier run only")
    parser.add_argument(
        "--again",
        action="store_true",
        help="keep OUT's full-budget study, run MO-ASHA once more with --grace/--eta",
    )
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = {"kind": "mo-asha", "grace": args.grace, "eta": args.eta}
    if args.metrics:
        settings["metrics"] = args.metrics.split(",")
    scheduler = f"study.scheduler={json.dumps(settings)}"
    if args.against:
        against(args, out, scheduler)
        return
    full_name, early_name = "es-full", "es-mo-asha"
    if args.again:
        early_name = f"es-mo-asha-g{args.grace}-e{args.eta}"
    if args.measure:
        args.trials, args.concurrent = 1, 1
        (out / "space.yaml").write_text(yaml.safe_dump(space(args), sort_keys=False))
        seconds = study_run(out, "es-measure", [])
        print(f"one trial of {args.epochs} epochs, alone, through study run: {seconds:.0f} s")
        return
    timings: dict[str, float] = {}
    if (out / "timings.json").is_file():
        timings = json.loads((out / "timings.json").read_text())
    if not args.analyse:
        (out / "space.yaml").write_text(yaml.safe_dump(space(args), sort_keys=False))
        if not args.again:
            timings[full_name] = study_run(out, full_name, [])
        timings[early_name] = study_run(out, early_name, ["--set", scheduler])
        (out / "timings.json").write_text(json.dumps(timings))
    uri = f"sqlite:///{out / 'mlflow.db'}"
    full, early = read_study(uri, full_name), read_study(uri, early_name)
    result = summary(full, early)
    result["wall_s"] = timings
    result["wall_ratio"] = timings[early_name] / timings[full_name]
    result["parent_wall_s"] = {s["name"]: s["parent_wall_s"] for s in (full, early)}
    result["same_configs"] = sorted(map(str, (t["config"] for t in full["trials"]))) == sorted(
        map(str, (t["config"] for t in early["trials"]))
    )
    result["replay"] = [
        replay(full, grace, eta, args.epochs)
        for grace, eta in ((1, 3), (2, 3), (3, 3), (1, 2), (2, 2))
        if grace < args.epochs
    ]
    result["machine"] = machine()
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("out", "figure")}
    (out / f"result-{early_name}.json").write_text(json.dumps(result, indent=1, default=str))
    (out / f"trials-{early_name}.json").write_text(
        json.dumps({"full": full, "mo_asha": early}, default=str)
    )
    figure(full, early, args.figure or out / "early-stopping.png", args)
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
