"""Does bf16 autocast cost accuracy? The `fast` recipe for 5 epochs on CIFAR-10, bf16 vs fp32,
same seed, in one process; prints test accuracy, images/s and peak memory of each.

Usage:  python benchmarks/bf16_vs_fp32.py --data ../shared/data/cifar10-jpeg.zip [--epochs 5] [--seeds 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile

from longtail.config import resolve_train_config
from longtail.data.sources import load_dataset
from longtail.run import run as run_training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    for seed in (int(s) for s in args.seeds.split(",")):
        results = {}
        for precision in ("bf16", "fp32"):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = resolve_train_config({"data": args.data, "out": f"{tmp}/run", "epochs": args.epochs,
                                            "precision": precision, "seed": seed, "quiet": True})
                s = run_training(cfg, ds)
            results[precision] = s
            print(f"seed {seed} {precision}: test acc {s['test_acc']:.4f}  balanced {s['test_balanced_acc']:.4f}  "
                  f"{s['images_per_s']:.0f} images/s  {s['wall_seconds']:.0f} s", flush=True)
        diff = results["bf16"]["test_acc"] - results["fp32"]["test_acc"]
        print(f"seed {seed}: bf16 - fp32 = {100 * diff:+.2f} points (target: within 1 point); "
              f"speed-up {results['bf16']['images_per_s'] / results['fp32']['images_per_s']:.2f}x")
    print(f"peak RSS of this process (both runs, dataset loaded once): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
