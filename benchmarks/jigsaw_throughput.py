"""Jigsaw pretraining vs classifier training, images/s on the same data, recipe and machine.

Both go through `longtail.engine.fit` (through `longtail.run`); one epoch each, interleaved and
repeated so that drift in machine speed hits both alike; the median of each is printed. The
issue's target: jigsaw within 1.5x of the classifier's images/s (a puzzle counts as one image).

Usage:  python benchmarks/jigsaw_throughput.py --data ../shared/data/cifar10-jpeg.zip
            [--images 10000] [--repeats 5] [--recipe seed|improved]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from longtail.config import resolve_train_config
from longtail.data.sources import load_dataset
from longtail.config import PRETRAIN_RECIPES, resolve_pretrain_config
from longtail.run import run as run_pretraining
from longtail.run import run as run_training

# The classifier recipe each pretraining recipe is paired with in the study presets: both jigsaw
# presets (seed-jigsaw.toml, jigsaw-improved.toml) train the classifier on the seed recipe.
CLASSIFIER_RECIPE = {"seed": "seed", "improved": "seed"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--images", type=int, default=10000, help="training images per timed epoch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--recipe", default="seed", choices=sorted(PRETRAIN_RECIPES))
    args = ap.parse_args()
    ds = load_dataset(args.data)
    common = {"data": args.data, "epochs": 1, "limit_train": args.images, "val_size": 1000,
              "limit_test": 1000, "quiet": True}
    classifier, jigsaw = [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = resolve_train_config({**common, "recipe": CLASSIFIER_RECIPE[args.recipe], "out": f"{tmp}/c"})
            classifier.append(run_training(cfg, ds)["images_per_s"])
            pcfg = resolve_pretrain_config({**common, "recipe": args.recipe, "out": f"{tmp}/j"})
            jigsaw.append(run_pretraining(pcfg, ds)["images_per_s"])
        print(f"repeat {r + 1}: classifier {classifier[-1]:.0f}  jigsaw {jigsaw[-1]:.0f} images/s", flush=True)
    c, j = statistics.median(classifier), statistics.median(jigsaw)
    print(f"\npretraining recipe {args.recipe!r} (batch {pcfg.batch_size}) vs classifier recipe "
          f"{CLASSIFIER_RECIPE[args.recipe]!r} (batch {cfg.batch_size}), {args.images} images, median of {args.repeats}")
    print(f"classifier: {c:8.0f} images/s")
    print(f"jigsaw    : {j:8.0f} puzzles/s")
    print(f"classifier / jigsaw = {c / j:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
