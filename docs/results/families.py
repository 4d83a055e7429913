"""Every operator's three scores under each shift family, from a ``study pareto`` export,
as a markdown table (docs/RESULTS.md, docs/study.md):

    study pareto NAME --out DIR --format csv
    python docs/results/families.py DIR/trials.csv > table.md

Rows: operator (the ``filter`` column: ``binomial-3``, ``aps(delta)``, ...) by training
augmentation; columns: accuracy without a shift, then per family (circular, crop,
sub-pixel) consistency, worst-case accuracy and mean accuracy, in percent.
"""

from __future__ import annotations

import csv
import sys

FAMILIES = ("circular", "crop", "subpixel")
SCORES = ("consistency", "acc_worst", "acc_mean")
SHORT = {"consistency": "cons.", "acc_worst": "worst", "acc_mean": "mean"}


def value(row: dict[str, str], family: str, score: str) -> float:
    for key in (f"final.test_{score}_{family}", f"test_{score}_{family}"):
        if row.get(key):
            return float(row[key])
    raise KeyError(f"{score}_{family}")


def main(path: str) -> None:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.sort(key=lambda r: (r["filter"], r["augment"]))
    header = ["operator", "augment", "acc"]
    header += [f"{family} {SHORT[score]}" for family in FAMILIES for score in SCORES]
    print("| " + " | ".join(header) + " |")
    print("|---|---|" + "---:|" * (len(header) - 2))
    for row in rows:
        cells = [f"`{row['filter']}`", row["augment"], f"{100 * float(row['test_acc']):.2f}"]
        for family in FAMILIES:
            scores = [100 * value(row, family, score) for score in SCORES]
            cells += [f"{v:.2f}" for v in scores]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
