"""Training curves of a study (validation accuracy and consistency per epoch, one line a
trial), for docs/RESULTS.md:

    MLFLOW_TRACKING_URI=... python docs/results/curves.py cifar10-cpu docs/results/curves.png
"""

from __future__ import annotations

import sys

import mlflow
from matplotlib.figure import Figure

import study
from study.service.tracking import tracking_uri


def main(name: str, out: str) -> None:
    trials = study.load(name).trials()
    trials = trials[trials.state == "FINISHED"].sort_values(["augment", "filter"])
    client = mlflow.MlflowClient(tracking_uri(None))
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2)
    colours = {f: f"C{i}" for i, f in enumerate(sorted(trials["filter"].unique()))}
    for _, trial in trials.iterrows():
        style = "-" if trial["augment"] == "none" else "--"
        for ax, metric in zip(axes, ("val_acc", "val_consistency"), strict=True):
            history = client.get_metric_history(trial["run_id"], metric)
            steps = [m.step for m in history]
            ax.plot(
                steps,
                [m.value for m in history],
                style,
                color=colours[trial["filter"]],
                label=f"{trial['filter']} / {trial['augment']}",
            )
    for ax, metric in zip(axes, ("validation accuracy", "validation consistency"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, title="filter / augmentation (dashed: shift)")
    figure.suptitle(f"{name}: training curves (validation split, every epoch)")
    figure.savefig(out, dpi=90)


if __name__ == "__main__":
    main(*sys.argv[1:3])
