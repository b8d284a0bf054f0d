"""``longtail predict``: class names and probabilities for image files, one row per image."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from longtail.errors import LongtailError
from longtail.inference.model import Classifier
from longtail.runs import atomic_write

# What marks a predictions file as longtail's, so --out replaces only files longtail wrote.
CSV_HEADER_START = "path,class_1,prob_1"


def image_files(inputs: Sequence[Path | str]) -> list[Path]:
    """Files named, and image files found (recursively, sorted, hidden names skipped) in folders named."""
    from longtail.data.sources import IMAGE_SUFFIXES

    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            inside = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(item).parts))
            if not inside:
                raise LongtailError(f"no image files in folder {item} (looked for "
                                    f"{', '.join(sorted(IMAGE_SUFFIXES))})")
            found.extend(inside)
        elif item.is_file():
            found.append(item)
        else:
            raise LongtailError(f"image or folder not found: {item}")
    return found


def read_image(path: Path, channels: int) -> torch.Tensor:
    """uint8 (channels, H, W) pixels of one image file, read under the dataset sources' caps and
    colour rule; grey and colour are converted to the run's channel count."""
    from longtail.data.sources import read_image_file

    img = read_image_file(path)
    if img.shape[0] == channels:
        return img
    if channels == 3:
        return img.expand(3, -1, -1).contiguous()
    return (img.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True).round().to(torch.uint8)


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]]  # (class, probability), most probable first


def predict(model: Classifier, files: Sequence[Path], top_k: int = 1) -> Iterator[Prediction]:
    """Top-``top_k`` classes of each image file, in file order.

    Files are decoded a batch at a time; images of one size are run through the model together,
    in batches of the run's own evaluation batch, so the kernels see the shapes the run's test did."""
    from longtail.data.loader import eval_batch_size

    if top_k < 1:
        raise LongtailError(f"--top-k must be at least 1, got {top_k}")
    k = min(top_k, len(model.classes))
    channels = model.preprocess.channels
    batch = eval_batch_size(model.preprocess.height, model.preprocess.width)
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        images = [read_image(p, channels) for p in chunk]
        if not model.preprocess.resize:
            want = (model.preprocess.height, model.preprocess.width)
            for p, img in zip(chunk, images):
                if tuple(img.shape[1:]) != want:
                    raise LongtailError(f"{p} is {img.shape[2]}x{img.shape[1]} px; this run's model takes "
                                        f"{want[1]}x{want[0]} px images (it was trained without an image size "
                                        "to resize to)")
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(tuple(img.shape), []).append(i)
        probs: list[torch.Tensor | None] = [None] * len(images)
        for rows in by_shape.values():
            p = model.probabilities(torch.stack([images[i] for i in rows]))
            for i, row in zip(rows, p):
                probs[i] = row
        for path, row in zip(chunk, probs):
            values, idx = row.topk(k)
            yield Prediction(path, [(model.classes[j], float(v)) for v, j in zip(values.tolist(), idx.tolist())])


def predictions_csv(predictions: Iterator[Prediction], top_k: int) -> str:
    """CSV text: path, then class_i and prob_i for i = 1..k."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["path"]
    for i in range(1, top_k + 1):
        header += [f"class_{i}", f"prob_{i}"]
    writer.writerow(header)
    for pred in predictions:
        row = [str(pred.path)]
        for name, prob in pred.top:
            row += [name, f"{prob:.6f}"]
        writer.writerow(row)
    return buffer.getvalue()


def write_predictions(path: Path, text: str) -> None:
    """Write a predictions CSV atomically; replace only a predictions CSV longtail wrote."""
    path = Path(path)
    if path.exists():
        if not path.is_file() or not _first_line(path).startswith(CSV_HEADER_START):
            raise LongtailError(f"{path} exists and is not a predictions file longtail wrote; choose another --out")
    data = text.encode()
    atomic_write(path, lambda f: f.write(data))


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.readline(256).decode("utf-8", "replace")
    except OSError:
        return ""
