"""Peak memory of a real `longtail train` run, at two image sizes: does it grow with the dataset?

For each size this runs, each in a fresh process and sampled from outside every 20 ms through
/proc/PID/status:

  1. `longtail data info --data D --image-size S`: decodes the dataset into the decoded cache
     (a fresh cache folder, so the decode is measured), one image at a time;
  2. `longtail train --data D --image-size S --epochs 1 ...`: one epoch over the whole training
     split (validation and test limited to --eval images, so evaluation batches stay small).

It reports the peak anonymous memory (RssAnon: what the process owns; what a dataset held in
memory would add to), the peak file-backed memory (RssFile: mapped pages of the decoded cache and
libraries, which the kernel may drop and reread) and the kernel's own high-water mark (VmHWM, both
together, from wait4). With the memory-mapped cache, RssAnon should not grow with the dataset:
CIFAR-10 at 128x128 is 2.7 GiB of pixels (2.3 GiB of them training images), at 32x32 0.17 GiB.

--baseline-src runs the same training at the dataset's own size with another source tree (e.g.
the code before the memory-mapped cache) for comparison; that code has no --image-size.

For scale, each size also gets "model step only": a process that imports longtail and runs 20
training steps of the seed CNN on one synthetic batch of that size (the `fast` recipe's
optimizer and precision) with no dataset at all: the floor any training run at that size has.

Usage:  nice -n 19 python benchmarks/memory.py --data ../shared/data/cifar10-jpeg.zip [--sizes 32,128]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Peak:
    anon: int = 0
    file: int = 0
    hwm: int = 0
    seconds: float = 0.0
    code: int = 0


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


STEP_ONLY = """
import sys, torch, torch.nn.functional as F
from longtail.device import autocast, resolve_precision
from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig
size, batch, threads = (int(v) for v in sys.argv[1:4])
torch.set_num_threads(threads)
device = torch.device("cpu")
precision = resolve_precision("auto", device)
model = SeedCNN(SeedCNNConfig(image_size=(size, size))).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))
for _ in range(20):
    with autocast(device, precision):
        loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
"""


def measured(argv: list[str], env: dict[str, str]) -> Peak:
    """Run ``python argv`` (e.g. ``-m longtail ...``) and sample its memory until it ends."""
    peak = Peak()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            s = _status(proc.pid)
            peak.anon = max(peak.anon, s.get("RssAnon", 0))
            peak.file = max(peak.file, s.get("RssFile", 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    peak.seconds = time.perf_counter() - started
    peak.hwm = usage.ru_maxrss * 1024
    peak.code = proc.returncode
    if peak.code != 0:
        print(f"  exit {peak.code}: {err.strip()[-400:]}", file=sys.stderr)
    return peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the CIFAR-10 zip (or any image folder / zip with train/ and test/)")
    p.add_argument("--sizes", default="32,128", help="image sizes to decode at, comma-separated (default 32,128)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch (default 128, the fast recipe's)")
    p.add_argument("--eval", type=int, default=256, help="validation and test images (default 256)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default=None, help="decoded-cache folder to use (default: a fresh temporary one)")
    p.add_argument("--baseline-src", default=None, help="another source tree to run at the native size, for comparison")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="longtail-memory-") as tmp:
        cache = args.cache or str(Path(tmp) / "cache")
        runs = []
        common = ["--epochs", "1", "--batch-size", str(args.batch_size), "--val-size", str(args.eval), "--limit-test",
                  str(args.eval), "--threads", str(args.threads), "--quiet"]
        for size in [int(s) for s in args.sizes.split(",")]:
            env = {**os.environ, "PYTHONPATH": str(SRC), "LONGTAIL_DATA": cache}
            sized = ["--data", args.data, "--image-size", str(size)]
            runs.append((f"{size}x{size}", "model step only", size,
                         measured(["-c", STEP_ONLY, str(size), str(args.batch_size), str(args.threads)], env)))
            runs.append((f"{size}x{size}", "decode (data info)", size,
                         measured(["-m", "longtail", "data", "info", *sized], env)))
            runs.append((f"{size}x{size}", "train 1 epoch", size,
                         measured(["-m", "longtail", "train", *sized, "--out", f"{tmp}/run-{size}", *common], env)))
        if args.baseline_src:
            env = {**os.environ, "PYTHONPATH": args.baseline_src, "LONGTAIL_DATA": str(Path(tmp) / "baseline-cache")}
            runs.append(("native (baseline)", "decode (data info)", 32,
                         measured(["-m", "longtail", "data", "info", "--data", args.data], env)))
            runs.append(("native (baseline)", "train 1 epoch", 32, measured(
                ["-m", "longtail", "train", "--data", args.data, "--out", f"{tmp}/run-baseline", *common], env)))

    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"python {platform.python_version()}; batch {args.batch_size}, {args.eval} validation and test images, "
          f"{args.threads} threads")
    print(f"{'images':<18}{'step':<20}{'CIFAR GiB':>11}{'RssAnon MiB':>13}{'RssFile MiB':>13}{'VmHWM MiB':>11}"
          f"{'seconds':>9}")
    for label, step, size, r in runs:
        pixels = 60000 * 3 * size * size / 2**30
        flag = "" if r.code == 0 else f"  (exit {r.code})"
        print(f"{label:<18}{step:<20}{pixels:>11.2f}{r.anon / MIB:>13.0f}{r.file / MIB:>13.0f}{r.hwm / MIB:>11.0f}"
              f"{r.seconds:>9.0f}{flag}")


if __name__ == "__main__":
    main()
