"""Training throughput of a classifier (--model, default the seed CNN) on CIFAR-10, in one process:

  (a) a naive reference: per-sample PIL transforms (ToTensor, Normalize, RandomHorizontalFlip)
      through a torch DataLoader, fp32, batch 64, Adam -- the usual tutorial loop (seed CNN only,
      unless --naive);
  (b) longtail's own loop (`longtail.engine.fit` via `longtail.run`) with the `fast` recipe;
  (c) the model step alone on synthetic tensors at (b)'s batch size and precision: the ceiling for (b);
  (d) with --compile: (c) with the model under torch.compile (compilation is timed apart, in the warm-up).

Each is timed over its training steps only (no evaluation) and repeated, interleaved; the median is printed.
Usage:  python benchmarks/train_throughput.py --data ../shared/data/cifar10-jpeg.zip [--images 20000]
        python benchmarks/train_throughput.py --model resnet32 --compile --threads 1 --images 2560 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from longtail.config import resolve_train_config
from longtail.data.sources import load_dataset
from longtail.device import autocast, resolve_device, resolve_precision
from longtail.models import ModelRequest, build_from_arch, model_arch
from longtail.models.seed_cnn import SeedCNN
from longtail.run import run as run_training


def naive_reference(images: torch.Tensor, labels: torch.Tensor) -> float:
    """(a): PIL per sample, DataLoader, fp32, batch 64, Adam. Returns images/s."""
    arrays = images.permute(0, 2, 3, 1).numpy()
    tf = T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)])

    class PILDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(arrays)

        def __getitem__(self, i):
            return tf(Image.fromarray(arrays[i])), int(labels[i])

    loader = torch.utils.data.DataLoader(PILDataset(), batch_size=64, shuffle=True, num_workers=0)
    model = SeedCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    n = 0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(y)
    return n / (time.perf_counter() - t0)


def longtail_loop(data: str, n_images: int, ds, model: str, threads: int | None) -> float:
    """(b): one epoch of `longtail train` (fast recipe); images/s as the loop measures its training steps."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_train_config({"data": data, "out": f"{tmp}/run", "epochs": 1, "limit_train": n_images,
                                    "val_size": 1000, "limit_test": 1000, "quiet": True, "model": model,
                                    "threads": threads})
        return run_training(cfg, ds)["images_per_s"]


class ModelStep:
    """(c) and (d): forward + backward + SGD step on one synthetic batch, channels_last, at (b)'s
    precision, with the fast recipe's optimizer and loss. Built once, so --compile compiles once."""

    def __init__(self, model: str, batch_size: int, precision: str, compile: bool = False):
        self.device, self.precision, self.batch_size = torch.device("cpu"), precision, batch_size
        net = build_from_arch(model_arch(model, ModelRequest())).to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.net = torch.compile(net) if compile else net
        self.x = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch_size,))
        t0 = time.perf_counter()
        for _ in range(5):  # warm-up; under torch.compile the first step compiles forward and backward
            self.step()
        self.warmup_seconds = time.perf_counter() - t0

    def step(self) -> None:
        with autocast(self.device, self.precision):
            loss = F.cross_entropy(self.net(self.x).float(), self.y, label_smoothing=0.1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def images_per_s(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * self.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--model", default="seed-cnn", help="--model of longtail train (seed-cnn, resnet32, tv:NAME)")
    ap.add_argument("--images", type=int, default=20000, help="training images per timed pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive", action=argparse.BooleanOptionalAction, default=None,
                    help="time (a), the naive seed-CNN loop (default: only with --model seed-cnn)")
    ap.add_argument("--compile", action="store_true", help="also time (d), the model step under torch.compile")
    ap.add_argument("--versus", metavar="MODEL", default=None,
                    help="also time (b) and (c) of this second model in the same repeats, interleaved, and print "
                    "the cost ratio per image (e.g. --model resnet32 --versus seed-cnn)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for (b)-(d) (default: torch's). On a machine other jobs share, 1 thread gives "
                    "steadier figures: a 2-thread step waits for whichever thread the scheduler has set aside")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    naive = args.model == "seed-cnn" if args.naive is None else args.naive
    ds = load_dataset(args.data)
    fast = resolve_train_config({"model": args.model})
    precision = resolve_precision("auto", resolve_device("cpu"))
    steps = args.images // fast.batch_size
    eager = ModelStep(args.model, fast.batch_size, precision)
    compiled = ModelStep(args.model, fast.batch_size, precision, compile=True) if args.compile else None
    other = ModelStep(args.versus, fast.batch_size, precision) if args.versus else None
    a, b, c, d, vb, vc = [], [], [], [], [], []
    for r in range(args.repeats):  # interleaved, so drift in machine speed hits all alike
        c.append(eager.images_per_s(steps))
        if compiled:
            d.append(compiled.images_per_s(steps))
        b.append(longtail_loop(args.data, args.images, ds, args.model, args.threads))
        if naive:
            a.append(naive_reference(ds.train_images[:args.images // 2], ds.train_labels[:args.images // 2]))
        if other:
            vc.append(other.images_per_s(steps))
            vb.append(longtail_loop(args.data, args.images, ds, args.versus, args.threads))
        shown = {"a": a, "b": b, "c": c, "d": d, f"{args.versus} b": vb, f"{args.versus} c": vc}
        print(f"repeat {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f}" for k, v in shown.items() if v) + " images/s",
              flush=True)
    ma, mb, mc, md = (statistics.median(v) if v else None for v in (a, b, c, d))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, model {args.model}, precision for (b)-(d): {precision}, "
          f"batch {fast.batch_size}, {args.images} images x {args.repeats} repeats")
    if naive:
        print(f"(a) naive PIL + DataLoader, fp32, batch 64 : {ma:8.0f} images/s")
    print(f"(b) longtail loop, fast recipe             : {mb:8.0f} images/s")
    print(f"(c) model step alone, synthetic            : {mc:8.0f} images/s")
    if compiled:
        print(f"(d) (c) under torch.compile                : {md:8.0f} images/s   (compile + 5 warm-up steps "
              f"{compiled.warmup_seconds:.0f} s, eager warm-up {eager.warmup_seconds:.1f} s)")
    if naive:
        print(f"b/a = {mb / ma:.2f}   (target >= 2.5)")
    print(f"b/c = {mb / mc:.2f}   (target >= 0.9)")
    if compiled:
        print(f"d/c = {md / mc:.2f}   (torch.compile's gain on the bare step)")
    if other:
        mvb, mvc = statistics.median(vb), statistics.median(vc)
        print(f"{args.versus}: (b) loop {mvb:.0f}, (c) model step {mvc:.0f} images/s; b/c = {mvb / mvc:.2f}")
        print(f"{args.model} costs {mvb / mb:.2f}x the time per image of {args.versus} in the loop, "
              f"{mvc / mc:.2f}x in the bare step")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
