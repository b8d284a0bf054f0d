"""A run's test accuracy under each rule that picks its epoch, from its metrics.jsonl and summary.json.

    python tools/selection_rules.py runs/cifar10-lt/runs/ce/seed-0
    python tools/selection_rules.py RUN [RUN ...] --last 10

The long-tail papers quote the best test accuracy over all epochs (Cao et al.'s code keeps
``best_acc1`` on the test set); longtail selects the epoch on its validation split. Between the two
lie the last epoch's figure and the epoch-to-epoch spread of the last epochs, which says how much of
a gap a choice of epoch alone can make. Needs the per-epoch test accuracy the classifier task
records (``test_acc`` in metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def selection_figures(run: Path, last: int = 10) -> dict:
    """Test accuracy at the validation-selected epoch, at the best-on-test epoch, at the last epoch,
    and the mean and sample std of the last ``last`` epochs' test accuracy (epochs 1-based)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "test_acc" in r]
    if not rows:
        raise ValueError(f"{run / 'metrics.jsonl'} has no per-epoch test accuracy")
    summary = json.loads((run / "summary.json").read_text())
    best = max(rows, key=lambda r: r["test_acc"])  # the first of equal maxima, as a running best keeps it
    tail = [r["test_acc"] for r in rows[-last:]]
    return {"val_selected": {"epoch": summary["best_epoch"], "test_acc": summary["test_acc"]},
            "best_test": {"epoch": best["epoch"], "test_acc": best["test_acc"]},
            "last_epoch": {"epoch": rows[-1]["epoch"], "test_acc": rows[-1]["test_acc"]},
            "last_epochs": {"n": len(tail), "mean": statistics.mean(tail),
                            "std": statistics.stdev(tail) if len(tail) > 1 else None}}


def line(run: Path, f: dict) -> str:
    spread = f["last_epochs"]
    std = f" ± {spread['std']:.4f}" if spread["std"] is not None else ""
    return (f"| {run} | {f['val_selected']['test_acc']:.4f} (epoch {f['val_selected']['epoch']}) "
            f"| {f['best_test']['test_acc']:.4f} (epoch {f['best_test']['epoch']}) "
            f"| {f['last_epoch']['test_acc']:.4f} (epoch {f['last_epoch']['epoch']}) "
            f"| {spread['mean']:.4f}{std} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished classifier run folders")
    parser.add_argument("--last", type=int, default=10, help="how many final epochs the spread covers (default 10)")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error("--last must be at least 1")
    print(f"| run | test acc, epoch selected on validation | best test acc over epochs | last epoch "
          f"| last {args.last} epochs, mean ± std |\n|---|---|---|---|---|")
    for run in args.runs:
        try:
            figures = selection_figures(run, args.last)
        except (OSError, ValueError, KeyError) as e:
            print(f"selection_rules: error: {run}: {e}", file=sys.stderr)
            return 2
        print(line(run, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
