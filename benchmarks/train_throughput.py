"""Training throughput of the seed CNN on CIFAR-10, three ways, in one process:

  (a) a naive reference: per-sample PIL transforms (ToTensor, Normalize, RandomHorizontalFlip)
      through a torch DataLoader, fp32, batch 64, Adam -- the usual tutorial loop;
  (b) longtail's own loop (`longtail.engine.fit` via `longtail.run`) with the `fast` recipe;
  (c) the model step alone on synthetic tensors at (b)'s batch size and precision: the ceiling for (b).

Each is timed over its training steps only (no evaluation) and repeated; the median is printed.
Usage:  python benchmarks/train_throughput.py --data ../shared/data/cifar10-jpeg.zip [--images 20000]
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


def longtail_loop(data: str, n_images: int, ds) -> float:
    """(b): one epoch of `longtail train` (fast recipe); images/s as the loop measures its training steps."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_train_config({"data": data, "out": f"{tmp}/run", "epochs": 1, "limit_train": n_images,
                                    "val_size": 1000, "limit_test": 1000, "quiet": True})
        return run_training(cfg, ds)["images_per_s"]


def model_step_only(batch_size: int, precision: str, steps: int) -> float:
    """(c): forward + backward + SGD step on one synthetic batch, channels_last, at (b)'s precision."""
    device = torch.device("cpu")
    model = SeedCNN().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def step():
        with autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--images", type=int, default=20000, help="training images per timed pass")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    fast = resolve_train_config({})
    precision = resolve_precision("auto", resolve_device("cpu"))
    a, b, c = [], [], []
    for r in range(args.repeats):  # interleaved, so drift in machine speed hits all three alike
        c.append(model_step_only(fast.batch_size, precision, steps=args.images // fast.batch_size))
        b.append(longtail_loop(args.data, args.images, ds))
        a.append(naive_reference(ds.train_images[:args.images // 2], ds.train_labels[:args.images // 2]))
        print(f"repeat {r + 1}: a {a[-1]:.0f}  b {b[-1]:.0f}  c {c[-1]:.0f} images/s", flush=True)
    ma, mb, mc = (statistics.median(v) for v in (a, b, c))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, precision for (b)/(c): {precision}, batch {fast.batch_size}")
    print(f"(a) naive PIL + DataLoader, fp32, batch 64 : {ma:8.0f} images/s")
    print(f"(b) longtail loop, fast recipe             : {mb:8.0f} images/s")
    print(f"(c) model step alone, synthetic            : {mc:8.0f} images/s")
    print(f"b/a = {mb / ma:.2f}   (target >= 2.5)")
    print(f"b/c = {mb / mc:.2f}   (target >= 0.9)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
