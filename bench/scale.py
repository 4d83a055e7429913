"""What the service costs as a study grows: simulated trials through the real path.

Two parts, both on PostgreSQL (the machine's server, fresh databases each time):

1. **Orchestration.** Studies of N simulated trials (``search_spaces/simulated.yaml``,
   nothing trained: :mod:`study.trial.simulated`) run by ``study run`` against a
   loopback Ray cluster (``ray start`` head + one worker node, logical CPUs), an
   ``mlflow server`` on PostgreSQL and an Optuna storage on PostgreSQL, random sampler
   (so that the sampler's own cost, part 2, does not hide the orchestration's). For
   each N: the driver's CPU seconds and peak memory (``os.wait4`` on the ``study run``
   process; Ray's processes run in the cluster, not under it), wall seconds, trials
   started per second, MLflow requests per trial-epoch (the server's access log), and
   what one refresh of the parent's front costs at that size.
2. **Samplers.** Optuna ask + tell milliseconds per trial for each sampler at n trials
   already in the storage, on the same space and closed-form objectives.

    python bench/scale.py                          # N = 10, 100, 1000; ~15 min on 2 cores
    python bench/scale.py --sizes 10 100 --samplers random tpe

Prints the tables and writes ``docs/results/scale.json`` and ``docs/results/scale.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the real servers the integration tests use
sys.path.insert(0, str(ROOT / "bench"))

from servers import (  # noqa: E402
    mlflow_server,
    postgres_database,
    postgres_reason,
    psycopg_url,
    ray_cluster,
)
from smoke_study import machine  # noqa: E402

SPACE = ROOT / "search_spaces" / "simulated.yaml"
EPOCHS = 5
SAMPLER_TRIALS_TIMED = {"random": 20, "tpe": 10, "nsga2": 10, "gp": 3}


def _requests(log: Path, start: int) -> dict[str, int]:
    """MLflow API requests in the server's access log after byte ``start``."""
    text = log.read_bytes()[start:].decode(errors="replace")
    lines = [line for line in text.splitlines() if '"POST /' in line or '"GET /' in line]
    api = [line for line in lines if "/api/" in line]
    return {"all": len(api), "log_batch": sum("log-batch" in line for line in api)}


class ThreadCPU:
    """CPU seconds of a process's threads, grouped by thread name (``/proc/PID/task``),
    polled in the background: a thread that ends keeps what it was last seen using.
    Ray's C++ threads carry their own names; other threads show as the process's."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        import threading

        self._pid, self._every_s = pid, every_s
        self._seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self._every_s):
            try:
                tasks = os.listdir(f"/proc/{self._pid}/task")
            except OSError:
                return
            for tid in tasks:
                try:
                    stat = Path(f"/proc/{self._pid}/task/{tid}/stat").read_text()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                name = "(main thread)" if int(tid) == self._pid else name
                fields = stat[stat.rindex(")") + 2 :].split()
                self._seen[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)

    def stop(self) -> dict[str, float]:
        """CPU seconds by thread name, largest first."""
        self._stop.set()
        self._thread.join()
        by_name: dict[str, float] = {}
        for name, seconds in self._seen.values():
            by_name[name] = by_name.get(name, 0.0) + seconds
        return dict(sorted(by_name.items(), key=lambda item: -item[1]))


def run_study(n: int, concurrent: int, cluster: dict, folder: Path) -> dict:
    """``study run`` of ``n`` simulated trials; the driver's costs and the study's."""
    import mlflow

    from study.pareto.store import update_parent_front

    with (
        postgres_database("scale_mlflow") as store,
        postgres_database("scale_optuna") as optuna_url,
        mlflow_server(store, folder) as url,
    ):
        log = folder / "mlflow-server.log"
        offset = log.stat().st_size
        env = {
            **cluster["env"],
            "MLFLOW_TRACKING_URI": url,
            "STUDY_OPTUNA_STORAGE": psycopg_url(optuna_url),
            "PYTHONPATH": str(ROOT),
        }
        name = f"scale-{n}"
        argv = [
            sys.executable, "-m", "study", "run", str(SPACE), "--name", name,
            "--address", cluster["address"],
            "--set", f"study.trials={n}", "--set", f"study.concurrent={concurrent}",
            "--set", "study.sampler=random", "--set", f"train.epochs={EPOCHS}",
        ]  # fmt: skip
        started = time.perf_counter()
        with open(folder / f"driver-{n}.log", "w") as out:
            driver = subprocess.Popen(argv, cwd=folder, env=env, stdout=out, stderr=out)
            threads = ThreadCPU(driver.pid)
            _, status, usage = os.wait4(driver.pid, 0)
            thread_cpu = threads.stop()
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError((folder / f"driver-{n}.log").read_text()[-3000:])
        requests = _requests(log, offset)
        client = mlflow.MlflowClient(url)
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], max_results=5000)
        parent = next(r for r in runs if r.data.tags.get("study.role") == "parent")
        children = [r for r in runs if r is not parent]
        starts = sorted(r.info.start_time / 1000 for r in children)
        refresh = []
        for _ in range(3):
            tick = time.perf_counter()
            update_parent_front(url, parent.info.run_id, "val_acc:max,val_consistency:max")
            refresh.append(time.perf_counter() - tick)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "trials": n,
        "complete": len(children),
        "wall_s": wall,
        "driver_cpu_s": cpu,
        "driver_cpu_s_per_trial": cpu / n,
        "wall_s_per_trial": wall / n,
        "driver_peak_mb": usage.ru_maxrss / 1024,
        "trials_started_per_s": (len(starts) - 1) / max(starts[-1] - starts[0], 1e-9),
        "mlflow_requests": requests["all"],
        "mlflow_requests_per_trial_epoch": requests["all"] / (n * EPOCHS),
        "mlflow_log_batch_per_trial_epoch": requests["log_batch"] / (n * EPOCHS),
        "front_refresh_s": statistics.median(refresh),
        "driver_thread_cpu_s": {name: round(s, 2) for name, s in thread_cpu.items()},
    }


def sampler_costs(samplers: list[str], sizes: list[int]) -> list[dict]:
    """Optuna ask + tell ms per trial with ``sizes`` complete trials in a PostgreSQL
    storage, for each sampler (the service's seeded samplers, its define-by-run space)."""
    import optuna

    from study.service.samplers import SAMPLERS
    from study.service.space import SearchSpace
    from study.service.storage import RedactingRDBStorage
    from study.trial.config import from_mapping
    from study.trial.simulated import final_metrics

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load(SPACE)

    def objective(trial):
        """The closed-form objectives; a configuration no trial can run (the service
        resamples those, study.service.searcher) fails, as in a study."""
        metrics = final_metrics(from_mapping(space.sample(trial)))
        return metrics["test_acc"], metrics["test_consistency"]

    rows = []
    for n in sizes:
        with postgres_database("scale_sampler") as url:
            storage = RedactingRDBStorage(psycopg_url(url))
            filled = optuna.create_study(
                study_name="s", storage=storage, directions=["maximize", "maximize"],
                sampler=optuna.samplers.RandomSampler(seed=0),
            )  # fmt: skip
            tick = time.perf_counter()
            filled.optimize(objective, n_trials=n, catch=(ValueError,))
            fill_ms = (time.perf_counter() - tick) / n * 1000
            for name in samplers:
                study = optuna.load_study(
                    study_name="s", storage=storage, sampler=SAMPLERS[name](space, 0)
                )
                timed = []
                for _ in range(SAMPLER_TRIALS_TIMED[name]):
                    tick = time.perf_counter()
                    trial = study.ask()
                    try:
                        study.tell(trial, objective(trial))
                    except ValueError:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    timed.append((time.perf_counter() - tick) * 1000)
                rows.append({"sampler": name, "n": n, "ask_tell_ms": statistics.median(timed)})
                print(f"  {name:7s} n={n:5d}: {rows[-1]['ask_tell_ms']:9.1f} ms per trial",
                      flush=True)  # fmt: skip
            rows.append({"sampler": "random (fill)", "n": n, "ask_tell_ms": fill_ms})
    return rows


def plot(studies: list[dict], samplers: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    if not studies:  # samplers only
        for axis in axes[:2]:
            axis.set_axis_off()
        studies = []
    sizes = [s["trials"] for s in studies]
    axes[0].plot(sizes, [s["driver_cpu_s_per_trial"] for s in studies], "o-", label="CPU / N")
    axes[0].plot(sizes, [s["wall_s_per_trial"] for s in studies], "s--", label="wall / N")
    marginal = [s for s in studies if "marginal_driver_cpu_s_per_trial" in s]
    axes[0].plot(
        [s["trials"] for s in marginal],
        [s["marginal_driver_cpu_s_per_trial"] for s in marginal],
        "^-",
        label="CPU of each further trial",
    )
    if studies:
        axes[0].set(xscale="log", xlabel="trials in the study",
                    ylabel="driver seconds per trial", title="Driver cost per trial")  # fmt: skip
        axes[0].legend()
        axes[1].plot(sizes, [s["front_refresh_s"] for s in studies], "o-")
        axes[1].set(xscale="log", yscale="log", xlabel="complete trials",
                    ylabel="seconds", title="One refresh of the parent's front")  # fmt: skip
    for name in sorted({r["sampler"] for r in samplers}):
        rows = [r for r in samplers if r["sampler"] == name]
        axes[2].plot([r["n"] for r in rows], [r["ask_tell_ms"] for r in rows], "o-", label=name)
    axes[2].set(xscale="log", yscale="log", xlabel="trials in the storage",
                ylabel="ms per ask + tell", title="Optuna on PostgreSQL")  # fmt: skip
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--concurrent", type=int, default=8, help="trials at once")
    parser.add_argument("--samplers", nargs="*", default=["random", "tpe", "nsga2", "gp"],
                        help="none: studies only")  # fmt: skip
    parser.add_argument("--sampler-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args()
    if (reason := postgres_reason()) is not None:
        sys.exit(f"scale: needs PostgreSQL: {reason}")
    print(f"machine: {machine()}")
    studies = []
    per_node = max(1, args.concurrent // 2)
    with ray_cluster(nodes=2, cpus_per_node=per_node) as cluster:
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix=f"scale-{n}-") as folder:
                row = run_study(n, args.concurrent, cluster, Path(folder))
            studies.append(row)
            print(
                f"N={n:5d}: wall {row['wall_s']:7.1f} s, driver CPU {row['driver_cpu_s']:7.1f} s"
                f" ({row['driver_cpu_s_per_trial']:.3f} s/trial), peak {row['driver_peak_mb']:.0f}"
                f" MB, {row['trials_started_per_s']:.2f} trials/s,"
                f" {row['mlflow_requests_per_trial_epoch']:.2f} MLflow requests per trial-epoch,"
                f" front refresh {row['front_refresh_s']:.2f} s",
                flush=True,
            )
            top = list(row["driver_thread_cpu_s"].items())[:6]
            print("         driver threads (CPU s): " + ", ".join(f"{k} {v:.1f}" for k, v in top))
    for before, after in itertools.pairwise(studies):
        extra = after["trials"] - before["trials"]
        after["marginal_driver_cpu_s_per_trial"] = (
            after["driver_cpu_s"] - before["driver_cpu_s"]
        ) / extra
        after["marginal_wall_s_per_trial"] = (after["wall_s"] - before["wall_s"]) / extra
        print(
            f"N={before['trials']}->{after['trials']}: each further trial cost the driver"
            f" {after['marginal_driver_cpu_s_per_trial']:.3f} s CPU and the study"
            f" {after['marginal_wall_s_per_trial']:.3f} s wall"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    partial = {"machine": machine(), "studies": studies, "samplers": []}
    (args.out / "scale.json").write_text(json.dumps(partial, indent=2))
    if args.samplers:
        print("Optuna ask + tell on PostgreSQL:")
    samplers = sampler_costs(args.samplers, args.sampler_sizes) if args.samplers else []
    result = {"machine": machine(), "studies": studies, "samplers": samplers}
    (args.out / "scale.json").write_text(json.dumps(result, indent=2))
    plot(studies, samplers, args.out / "scale.png")
    print(f"wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")


if __name__ == "__main__":
    main()
