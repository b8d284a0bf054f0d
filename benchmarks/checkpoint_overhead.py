"""What checkpointing costs per epoch: a CIFAR-10 training run of the seed CNN (fast recipe) with
every checkpoint write timed, against the epoch's training time.

Usage:  python benchmarks/checkpoint_overhead.py --data ../shared/data/cifar10-jpeg.zip [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import longtail.run as runner
from longtail.config import resolve_train_config
from longtail.data.sources import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    timings: list[float] = []
    real_save = runner.save_checkpoint

    def timed_save(path, state):
        t0 = time.perf_counter()
        real_save(path, state)
        timings.append(time.perf_counter() - t0)

    runner.save_checkpoint = timed_save
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_train_config({"data": args.data, "out": f"{tmp}/run", "epochs": args.epochs, "quiet": True})
        runner.run_training(cfg, ds)
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
        size = (Path(tmp) / "run" / "checkpoint.pt").stat().st_size
    per_epoch = timings[:len(rows)]  # one write at each epoch's end; the last one is the final save
    epoch_seconds = sum(r["seconds"] for r in rows) / len(rows)
    mean_save = sum(per_epoch) / len(per_epoch)
    print(f"checkpoint file {size / 1e6:.2f} MB, write (temp + fsync + rename) {1000 * mean_save:.1f} ms, "
          f"epoch {epoch_seconds:.1f} s -> overhead {100 * mean_save / epoch_seconds:.2f}% per epoch (target < 2%)")


if __name__ == "__main__":
    main()
