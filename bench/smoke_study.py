"""Where a study's time goes: the smoke study end to end, with and without
``OMP_NUM_THREADS`` exported, through the real service (local Ray, MLflow in SQLite).

For each run it prints the study's wall time, the trials' own wall times (MLflow run
start to end) and how close the study came to perfect packing (the trials' summed
wall time divided by the concurrency), and per trial where the time went: training,
per-epoch validation, the final test evaluation, and everything else (setup, data,
checkpoints, figures, tracking), the part a study pays for nothing.

    python bench/smoke_study.py                      # both variants, ~5 min on 2 cores
    python bench/smoke_study.py --variants plain --set train.epochs=2

Never export OMP_NUM_THREADS yourself when timing: the ``omp2`` variant does it for
its own run only, to show that trials pin their threads whatever it says.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
VARIANTS = {"plain": {}, "omp2": {"OMP_NUM_THREADS": "2"}}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {python}"


def run_variant(name: str, overrides: list[str], folder: Path) -> dict:
    """``study run`` of the smoke space in ``folder``; the study's numbers from MLflow."""
    import mlflow

    from study.mlflow_layout import final_metrics

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RAY_ADDRESS")}
    env.update(VARIANTS[name])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    sets = [item for text in overrides for item in ("--set", text)]
    started, started_at = time.perf_counter(), time.time()
    result = subprocess.run(
        [sys.executable, "-m", "study", "run", str(SMOKE), "--name", f"bench-{name}", *sets],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    ended_at = time.time()
    if result.returncode != 0:
        raise SystemExit(
            f"{name}: study run failed\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(f"bench-{name}")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags.get("study.role") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("study.role") == "parent")
    concurrent = int(float(parent.data.params["study.concurrent"]))
    rows = []
    for run in trials:
        m = final_metrics(run.data.metrics) | {"threads": float(run.data.tags["study.threads"])}
        seconds = (run.info.end_time - run.info.start_time) / 1000
        work = m["train_seconds"] + m["validation_seconds"] + m["test_seconds"]
        rows.append(
            {
                "trial": seconds,
                "train": m["train_seconds"],
                "val": m["validation_seconds"],
                "test": m["test_seconds"],
                "other": seconds - work,
                "figures": m.get("figures_seconds", float("nan")),
                "setup": m.get("setup_seconds", float("nan")),
                "checkpoint": m.get("checkpoint_seconds", float("nan")),
                "threads": m.get("threads", float("nan")),
            }
        )
    summed = sum(r["trial"] for r in rows)
    first_start = min(run.info.start_time for run in trials) / 1000
    last_end = max(run.info.end_time for run in trials) / 1000
    timeline = {
        "startup": first_start - started_at,  # study process start -> first trial logging
        "trials span": last_end - first_start,
        "shutdown": ended_at - last_end,  # last trial done -> study process exit
    }
    return {
        "wall": wall,
        "packing": summed / concurrent,
        "rows": rows,
        "concurrent": concurrent,
        "timeline": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="plain,omp2", help="plain, omp2 (comma-separated)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"--variants: {name!r} is not one of {', '.join(VARIANTS)}")
    print(f"machine: {machine()}")
    print(f"space: {SMOKE.relative_to(ROOT)} {' '.join(args.overrides)}".rstrip())
    results = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"smoke-{name}-") as folder:
            results[name] = run_variant(name, args.overrides, Path(folder))
        res = results[name]
        rows = res["rows"]
        exported = ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "nothing exported"
        print(
            f"\n{name} ({exported}): "
            f"study {res['wall']:.1f} s for {sum(r['trial'] for r in rows):.1f} s of trials at "
            f"{res['concurrent']} concurrent; perfect packing {res['packing']:.1f} s, "
            f"ratio {res['wall'] / res['packing']:.2f}x"
        )
        for key in ("trial", "train", "val", "test", "other", "setup", "checkpoint", "figures"):
            values = [r[key] for r in rows]
            print(
                f"  {key:<10} median {statistics.median(values):6.2f} s  "
                f"min {min(values):6.2f}  max {max(values):6.2f}"
            )
        print(f"  threads per trial: {sorted({int(r['threads']) for r in rows})}")
        print("  timeline: " + ", ".join(f"{k} {v:.1f} s" for k, v in res["timeline"].items()))
    if len(results) == 2:
        a, b = (results[n]["wall"] for n in names)
        print(f"\n{names[1]} / {names[0]} study wall time: {b / a:.2f}x")


if __name__ == "__main__":
    main()
