"""Adaptive rungs, replayed: a rung counts only once ``k`` trials have finished their
full budget and, over those, each rung metric at the rung's epoch correlates with the
final objective (Spearman |rho| >= ``threshold``). Until then a trial passes the rung.
Measured on the studies ``bench/stopping_rules.py collect`` recorded, against the same
targets (hypervolume >= 95 % of the full study's on the worst unseen seed, <= 45 % of the
trial-epochs on their median, the best trial in either objective never stopped before
half the budget).

    python bench/adaptive_rungs.py            # every setting, one line each

The scheduler is the service's own (``MultiObjectiveASHA.judge``); only the gate is new.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stopping_rules as sr

HISTORIES = Path(__file__).resolve().parent / "histories"
TUNED = {("shapes", seed) for seed in (0, 1, 2)}  # the seeds the defaults were chosen on
METRICS = {
    "val metrics": {"val_acc": "max", "val_consistency": "max"},
    "train_loss + val_consistency": {"train_loss": "min", "val_consistency": "max"},
}


def _tracks(finished: list, epoch: int, metrics: dict[str, str], threshold: float) -> bool:
    """Whether each rung metric at ``epoch`` ranks the finished trials as their finals do."""
    from scipy.stats import spearmanr

    for j, metric in enumerate(metrics):
        rho = spearmanr(
            [rows[epoch - 1][metric] for rows, _ in finished], [final[j] for _, final in finished]
        ).statistic
        if not abs(rho) >= threshold:  # NaN (constant values) counts as no signal
            return False
    return True


def replay(study: dict[str, Any], metrics: dict, grace: int, eta: int, k: int, threshold: float):
    """(hypervolume ratio, trial-epoch share, best trial stopped before half the budget)."""
    rule = {"metrics": metrics, "grace": grace, "eta": eta}
    result = sr.replay(
        study,
        rule,
        gate=lambda finished, epoch: (
            len(finished) >= k and _tracks(finished, epoch, metrics, threshold)
        ),
    )
    lost = bool(result["best_stopped_early"])
    return result["hypervolume_ratio"], result["epochs_ratio"], lost


def main() -> None:
    studies = [json.loads(p.read_text()) for p in sorted(HISTORIES.glob("*-seed*.json"))]
    settings = itertools.product(METRICS.items(), [(1, 3), (1, 4), (2, 3)], (3, 5, 8), (0.6, 0.8))
    for (name, metrics), (grace, eta), k, threshold in settings:
        parts = []
        for kind in ("shapes", "cifar10"):
            rows = [
                replay(s, metrics, grace, eta, k, threshold)
                for s in studies
                if s["space"] == kind and (kind, s["seed"]) not in TUNED
            ]
            worst = min(r[0] for r in rows)
            share = statistics.median(r[1] for r in rows)
            lost = sum(r[2] for r in rows)
            parts.append(f"{kind} {worst:.3f} {100 * share:4.1f} % lost {lost}/{len(rows)}")
        print(f"{name:28s} grace {grace} eta {eta} k {k} rho {threshold}:", " | ".join(parts))


if __name__ == "__main__":
    main()
