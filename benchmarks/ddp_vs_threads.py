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
import statistics
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
    ap.add_argument("--seeds", default="0,1,2", help="accuracy at this size moves by about a point from seed to seed")
    args = ap.parse_args()
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    one, two = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            train = ["train", "--data", str(Path(args.data).resolve()), "--epochs", str(args.epochs), "--limit-train",
                     str(args.images), "--seed", str(seed), "--quiet"]
            one.append(run(f"seed {seed}: 1 process x 2 threads",
                           [sys.executable, "-m", "longtail", *train, "--out", f"{tmp}/one{seed}"],
                           {**os.environ, "OMP_NUM_THREADS": "2"}, Path(tmp) / f"one{seed}"))
            two.append(run(f"seed {seed}: 2 processes x 1 thread",
                           [torchrun, "--standalone", "--nproc_per_node=2", "-m", "longtail", *train,
                            "--out", f"{tmp}/two{seed}"], {**os.environ, "OMP_NUM_THREADS": "1"}, Path(tmp) / f"two{seed}"))
    mean = statistics.fmean
    print(f"speed 2x1 / 1x2 = {mean(r['speed'] for r in two) / mean(r['speed'] for r in one):.2f}")
    diffs = [100 * (b["acc"] - a["acc"]) for a, b in zip(one, two)]
    print(f"test accuracy: 1 process {100 * mean(r['acc'] for r in one):.2f}%, 2 processes "
          f"{100 * mean(r['acc'] for r in two):.2f}%; paired difference {mean(diffs):+.2f} points "
          f"(per seed: {', '.join(f'{d:+.2f}' for d in diffs)}; target: within 1 point)")


if __name__ == "__main__":
    main()
