"""``longtail evaluate``: every metric of a run's summary on another labelled dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from longtail.errors import LongtailError
from longtail.inference.model import build_classifier, open_run
from longtail.runs import write_json

# What marks an evaluation file as longtail's, so a rerun replaces only its own.
EVALUATION_KIND = "longtail-evaluation"


def evaluation_name(data: str) -> str:
    """``evaluation-<stem>.json``'s stem: the data path's last part without suffix, filename-safe."""
    stem = Path(str(data).rstrip("/\\")).stem or "data"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "data"


def check_classes(run_classes: list[str], data_classes: list[str], data: str) -> None:
    if list(run_classes) == list(data_classes):
        return
    missing = [c for c in run_classes if c not in data_classes]
    extra = [c for c in data_classes if c not in run_classes]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"extra {', '.join(extra)}")
    raise LongtailError(f"{data} has other classes than the run ({'; '.join(parts) or 'another order'}); "
                        "evaluate needs the same class names")


@torch.no_grad()
def evaluate(run: Path | str, data: str, *, precision: str | None = None) -> tuple[Path, dict]:
    """Every test figure of summary.json on the test split of ``data``; written to the run folder
    as evaluation-<name>.json. Returns (that path, the record)."""
    from longtail.data.sources import load_dataset
    from longtail.metrics import classification_report, confusion_matrix
    from longtail.data.loader import eval_batch_size

    finished = open_run(run, "evaluate")
    model = build_classifier(finished, precision, "cpu")
    out = finished.path / f"evaluation-{evaluation_name(data)}.json"
    _check_replaceable_json(out)
    # decoded at the run's image size, as its own images were (a run without one takes them as they are)
    ds = load_dataset(data, image_size=finished.config.get("image_size"), resize=finished.config.get("resize"))
    check_classes(model.classes, ds.classes, data)
    c, h, w = ds.image_shape
    pre = model.preprocess
    if not pre.resize and (h, w) != (pre.height, pre.width):
        raise LongtailError(f"{data} has {w}x{h} px images; this run's model takes {pre.width}x{pre.height} px "
                            "images (it was trained without an image size to resize to)")
    if c != pre.channels and not (c == 1 and pre.channels == 3):
        raise LongtailError(f"{data} has {c}-channel images; this run's model takes {pre.channels} channels")
    num_classes = len(model.classes)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    # As tasks.classify.confusion: loss on the raw logits, predictions after the adjustment.
    batch = eval_batch_size(pre.height, pre.width)
    for start in range(0, ds.test_labels.numel(), batch):
        images, labels = ds.test_images[start:start + batch], ds.test_labels[start:start + batch]
        logits = model.raw_logits(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        cm += confusion_matrix(labels, (logits - model.logit_adjustment).argmax(dim=1), num_classes)
    report = classification_report(cm)
    n = int(cm.sum())
    record = {
        "kind": EVALUATION_KIND,
        "run": str(finished.path),
        "data": str(data),
        "split": "test",
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint, "image_shape": [c, h, w]},
        "n_test": n,
        # named as in summary.json, so one script reads both
        "test_acc": report["acc"],
        "test_balanced_acc": report["balanced_acc"],
        "test_macro_f1": report["macro_f1"],
        "test_loss": float(loss_sum) / max(n, 1),
        "per_class_acc": report["per_class_acc"],
        "confusion": report["confusion"],
        "classes": model.classes,
        "precision": model.precision,
        "logit_adjusted": finished.checkpoint.get("logit_adjustment") is not None,
    }
    write_json(out, record)
    return out, record


def _check_replaceable_json(path: Path) -> None:
    if not path.exists():
        return
    try:
        ours = path.is_file() and json.loads(path.read_text()).get("kind") == EVALUATION_KIND
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise LongtailError(f"{path} exists and is not an evaluation longtail wrote; move it away first")
