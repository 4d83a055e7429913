"""How long `study status`, `study list` and `study pareto` take to answer, beside the
floor MLflow itself sets (importing it and reaching the same store), on a study of N
trials written as the service writes them (one parent, N finished children with params
and final metrics) in a SQLite store.

    .venv/bin/python bench/queries.py --trials 8 1000

Prints, per study size, the median wall time of each command over ``--repeats`` runs
(each a fresh process, as a user runs it) and its ratio to the MLflow floor measured
in the same run. docs/PERFORMANCE.md records the results with the machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_study(uri: str, folder: Path, name: str, trials: int) -> None:
    """A finished study of ``trials`` complete trials, as the service lays it out."""
    import mlflow
    from mlflow.entities import Param

    from study.service import tracking

    space = folder / f"{name}.yaml"
    space.write_text(f"study: {{name: {name}}}\n")
    params = {
        "study.trials": trials,
        "study.objectives": "test_acc:max,test_consistency:max",
    }
    parent = tracking.start_parent(uri, name, name, params, space, {"study": {}})
    client = mlflow.MlflowClient(uri)
    filters = ("delta", "binomial-3", "binomial-5", "rect-2", "triangle-3")
    for i in range(trials):
        run = tracking.open_child_run(client, parent, f"trial_{i:05d}", f"{name}-{i:05d}")
        acc, consistency = 0.8 + 0.1 * ((i * 37) % 101) / 100, 0.9 + 0.09 * ((i * 53) % 97) / 96
        client.log_batch(
            run, params=[Param("model.filter", filters[i % 5]), Param("augment.kind", "flip")]
        )
        final = {"test_acc": acc, "test_consistency": consistency}
        tracking.log_metrics(client, run, final, final=True)
        client.set_terminated(run, "FINISHED")
    client.set_terminated(parent, "FINISHED")


def timed(command: list[str], cwd: Path, repeats: int) -> float:
    """Median wall seconds of ``command`` in a fresh process; it must succeed."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[8, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    study = [sys.executable, "-m", "study"]
    for trials in args.trials:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            start = time.perf_counter()
            write_study(uri, folder, "q", trials)
            print(f"\n{trials} trials (store written in {time.perf_counter() - start:.0f} s)")
            floor = timed(
                [sys.executable, "-c",
                 f"import mlflow; mlflow.MlflowClient({uri!r}).search_experiments()"],
                folder, args.repeats,
            )  # fmt: skip
            rows = {
                "MLflow floor (import, reach the store)": floor,
                "study --help": timed([*study, "--help"], folder, args.repeats),
                "study status q": timed(
                    [*study, "status", "q", "--tracking-uri", uri], folder, args.repeats
                ),
                "study list": timed([*study, "list", "--tracking-uri", uri], folder, args.repeats),
                "study pareto q --out DIR": timed(
                    [*study, "pareto", "q", "--tracking-uri", uri, "--out", str(folder / "p")],
                    folder,
                    args.repeats,
                ),
            }
            for name, seconds in rows.items():
                print(f"  {name:42} {seconds:6.2f} s  {seconds / floor:5.2f}x the floor")


if __name__ == "__main__":
    main()
