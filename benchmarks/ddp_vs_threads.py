"""Two ways to use the cores of one CPU for one training run, side by side:
2 processes x 1 thread (torchrun, DistributedDataParallel over gloo) vs 1 process x 2 threads.

Also checks that data parallelism does not change the result: with the same seed and global
batch, the 2-process and the 1-process run should reach test accuracies within 1 point.

Usage:  python benchmarks/ddp_vs_threads.py --data ../shared/data/cifar10-jpeg.zip [--epochs 3] [--images 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(label: str, cmd: list[str], env: dict, out: Path) -> dict:
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # first epoch excluded from speed: it pays one-off kernel selection and process-group setup
    speed = sum(r["images_per_s"] for r in rows[1:]) / max(len(rows) - 1, 1)
    print(f"{label:<28} {speed:8.0f} images/s   test acc {summary['test_acc']:.4f}   "
          f"wall {summary['wall_seconds']:.0f} s", flush=True)
    return {"speed": speed, "acc": summary["test_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train = ["train", "--data", str(Path(args.data).resolve()), "--epochs", str(args.epochs), "--limit-train",
             str(args.images), "--seed", str(args.seed), "--quiet"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    with tempfile.TemporaryDirectory() as tmp:
        one = run("1 process x 2 threads", [sys.executable, "-m", "longtail", *train, "--out", f"{tmp}/one"],
                  {**os.environ, "OMP_NUM_THREADS": "2"}, Path(tmp) / "one")
        two = run("2 processes x 1 thread", [torchrun, "--standalone", "--nproc_per_node=2", "-m", "longtail", *train,
                                             "--out", f"{tmp}/two"], {**os.environ, "OMP_NUM_THREADS": "1"},
                  Path(tmp) / "two")
    print(f"speed 2x1 / 1x2 = {two['speed'] / one['speed']:.2f}")
    print(f"test accuracy difference (2 processes - 1 process) = {100 * (two['acc'] - one['acc']):+.2f} points "
          f"(target: within 1 point)")


if __name__ == "__main__":
    main()
