#!/usr/bin/env bash
# Same seed, same numbers? Run three small real-data runs (a classifier with LDAM-DRW, copy-aug and
# exponential:10; a jigsaw pretraining; a transfer from it) with two source trees and compare every
# metrics.jsonl row and summary.json key except timings, bit for bit.
#   tools/same_numbers.sh OLD_SRC NEW_SRC [CIFAR_ZIP]    e.g. tools/same_numbers.sh /tmp/old/src src
set -euo pipefail
OLD=$1; NEW=$2; ZIP=${3:-../shared/data/cifar10-jpeg.zip}
OUT=$(mktemp -d)
for side in old new; do
  SRC=$([ $side = old ] && echo "$OLD" || echo "$NEW")
  export PYTHONPATH=$SRC
  python -m longtail train --data "$ZIP" --out "$OUT/$side/clf" --epochs 2 --limit-train 6000 --limit-test 2000 \
    --imbalance exponential:10 --loss ldam-drw --head cosine --rebalance copy-aug --quiet --threads 1
  python -m longtail pretrain --data "$ZIP" --out "$OUT/$side/jig" --epochs 1 --limit-train 3000 --limit-test 1000 \
    --recipe improved --quiet --threads 1
  python -m longtail train --data "$ZIP" --out "$OUT/$side/xfer" --epochs 1 --limit-train 3000 --limit-test 1000 \
    --recipe seed --init "$OUT/$side/jig/checkpoint.pt" --transfer-layers conv1,conv2 --quiet --threads 1
done
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
timing = {"seconds", "images_per_s", "wall_seconds", "peak_rss_mib_process", "transfer"}  # transfer names the path
bad = 0
for run in ("clf", "jig", "xfer"):
    a, b = (json.load(open(f"{out}/{side}/{run}/summary.json")) for side in ("old", "new"))
    diff = sorted(k for k in set(a) & set(b) if k not in timing and a[k] != b[k])
    rows = [[{k: v for k, v in json.loads(line).items() if k not in timing} for line in open(f"{out}/{side}/{run}/metrics.jsonl")]
            for side in ("old", "new")]
    same = not diff and rows[0] == rows[1]
    bad += not same
    print(f"{run}: {'identical' if same else 'DIFFERENT ' + ', '.join(diff)}")
sys.exit(1 if bad else 0)
PY
