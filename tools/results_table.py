"""A study's aggregate.json as the markdown table docs/results.md and README show.

    python tools/results_table.py runs/cifar10-lt-seed-cnn            # rows by balanced accuracy
    python tools/results_table.py runs/cifar10-lt-seed-cnn --order file  # rows in the study's arm order

Columns: balanced accuracy (mean +- sample std over seeds), the best test accuracy over epochs (as the
papers quote it), ECE, head / middle / tail accuracy, the recovery of the imbalance gap (when the study
has a reference arm) and the paired comparison with the arm's baseline (mean difference in points
+- its std over seeds, paired t-test p). Every figure is read from aggregate.json as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _stat(entry: dict, metric: str, digits: int = 4) -> str:
    stat = entry[metric]
    if stat["mean"] is None:
        return "-"
    std = f" ± {stat['std']:.{digits}f}" if stat["std"] is not None else ""
    return f"{stat['mean']:.{digits}f}{std}"


def _paired(aggregate: dict, arm: str) -> str:
    if arm == aggregate.get("baseline") and arm not in aggregate["paired"]:
        return "baseline"
    p = aggregate["paired"].get(arm, {}).get("test_balanced_acc")
    if not p or p["diff_mean"] is None:
        return "-"
    std = f" ± {100 * p['diff_std']:.2f}" if p["diff_std"] is not None else ""
    test = f", p = {p['p_value']:.2g}" if p["p_value"] is not None else ""
    return f"{100 * p['diff_mean']:+.2f}{std} pts{test}"


def table(aggregate: dict, order: str = "metric") -> str:
    arms = aggregate["arms"]
    names = list(arms)
    if order == "metric":
        names.sort(key=lambda a: -(arms[a]["test_balanced_acc"]["mean"] or 0))
    recovery = aggregate.get("recovery") or {}
    head = ["arm", "seeds", "balanced acc", "best test acc over epochs", "ECE", "head / middle / tail acc"]
    head += ["recovery"] if aggregate.get("reference") else []
    head += [f"vs {aggregate.get('baseline') or 'baseline'} (paired, balanced acc)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in names:
        entry = arms[arm]
        groups = [entry[f"{g}_acc"]["mean"] for g in ("head", "middle", "tail")]
        cells = [arm, str(entry["n_seeds"]), _stat(entry, "test_balanced_acc"),
                 _stat(entry, "best_test_acc_over_epochs"), _stat(entry, "test_ece", 3),
                 " / ".join("-" if g is None else f"{g:.3f}" for g in groups)]
        if aggregate.get("reference"):
            value = recovery.get(arm, {}).get("test_balanced_acc")
            cells.append("reference" if arm == aggregate["reference"] else "-" if value is None else f"{value:.1%}")
        cells.append(_paired(aggregate, arm))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder (holding aggregate.json)")
    parser.add_argument("--order", choices=("metric", "file"), default="metric",
                        help="rows by mean balanced accuracy (default) or in the study's arm order")
    args = parser.parse_args(argv)
    path = args.study / "aggregate.json"
    try:
        aggregate = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"results_table: error: cannot read {path}: {e}", file=sys.stderr)
        return 2
    print(table(aggregate, args.order))
    return 0


if __name__ == "__main__":
    sys.exit(main())
