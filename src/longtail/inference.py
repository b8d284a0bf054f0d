"""Using a finished classifier run: load_model, predict, evaluate, export.

The model a run leaves behind expects normalized float batches from the loader; the model here
takes images as they come from a decoder and does the rest itself, so a user (or an exported
file) cannot get the preprocessing wrong:

    images (N, C, H, W): uint8 in [0, 255], or float in [0, 1] (torchvision's convention)
      -> float in [0, 1] -> resized to the run's image size (only when the run has one)
      -> normalized with the run's per-channel mean and std -> the network
      -> logits minus the run's post-hoc logit adjustment (if it was evaluated with one)

The output is those adjusted logits: their argmax is the run's prediction, their softmax the
probabilities ``longtail predict`` prints. The operations and their order are the loader's and
``tasks.classify.confusion``'s, under the run's precision, so predictions of the run's own test
images reproduce its summary.json exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from longtail.device import autocast
from longtail.errors import LongtailError
from longtail.runs import atomic_write, load_checkpoint, read_json, write_json

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
# What marks a file as longtail's, so --out replaces only files longtail wrote: a CSV header, a
# "kind" key in JSON, an extra file inside a TorchScript zip, a metadata key in an ONNX model.
CSV_HEADER_START = "path,class_1,prob_1"
EVALUATION_KIND = "longtail-evaluation"
EXPORT_MARK = "longtail.json"
ONNX_EXTRA = "pip install 'longtail[onnx]'"
DECODED_KINDS = "JPEG, PNG, WebP or GIF"  # what torchvision.io.decode_image reads


# --- the run folder ------------------------------------------------------------------------------


@dataclass
class FinishedRun:
    """What inference reads from a finished classifier run folder."""

    path: Path
    config: dict
    summary: dict
    checkpoint: dict

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.get("classes") or self.summary["classes"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images the network was trained on."""
        c, h, w = self.summary["dataset"]["image_shape"]
        return int(c), int(h), int(w)

    @property
    def resize_to(self) -> tuple[int, int] | None:
        """(height, width) to resize inputs to: set when the run resized its images at decode."""
        return _image_size(self.config.get("image_size"), self.path)


def _image_size(value, where: Path) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value), int(value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise LongtailError(f"{where / 'config.json'} has an image_size this version cannot read: {value!r}")


def open_run(path: Path | str, action: str = "use") -> FinishedRun:
    """The run at ``path``, refused unless it is a finished classifier run; ``action`` names what
    the user asked for in the messages ("predict with", "evaluate", "export")."""
    path = Path(path)
    if not path.exists():
        raise LongtailError(f"run folder not found: {path}")
    if not path.is_dir():
        raise LongtailError(f"{path} is not a run folder (give the folder a `longtail train --out` made)")
    config_path, summary_path = path / "config.json", path / "summary.json"
    if not config_path.is_file():
        raise LongtailError(f"{path} is not a run folder: it has no config.json (give the folder a "
                            "`longtail train --out` made)")
    config = read_json(config_path)
    if not (isinstance(config, dict) and "dataset_fingerprint" in config and "seed" in config):
        raise LongtailError(f"{path} is not a longtail run folder: its config.json is not one longtail wrote")
    if not summary_path.is_file():
        raise LongtailError(f"cannot {action} {path}: the run has not finished (no summary.json); let it finish, "
                            f"or continue it with --resume")
    summary = read_json(summary_path)
    checkpoint = load_checkpoint(path / "checkpoint.pt")
    kind = checkpoint.get("kind")
    if kind != "classifier":
        made_by = "longtail pretrain" if kind == "jigsaw" else "not longtail train"
        raise LongtailError(f"cannot {action} {path}: it is a {kind} run ({made_by}); only classifier runs "
                            "(longtail train) predict classes")
    if not isinstance(summary, dict) or "dataset" not in summary:
        raise LongtailError(f"{summary_path} is not a classifier run's summary")
    if config.get("loss") == "logit-adjust-posthoc" and checkpoint.get("logit_adjustment") is None:
        raise LongtailError(f"{path} was trained with logit-adjust-posthoc, but its checkpoint predates the stored "
                            "adjustment; retrain it to predict as it was evaluated")
    return FinishedRun(path, config, summary, checkpoint)


# --- the model -----------------------------------------------------------------------------------


class Preprocess(nn.Module):
    """Decoder output -> the normalized batch the network was trained on (see the module doc).

    TorchScript-compatible, so an exported model carries it. The steps are the loader's
    (``BatchLoader.epoch`` and ``normalize``), op for op, so the numbers are identical.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: tuple[int, int], resize: bool,
                 channels: int):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.height, self.width = int(size[0]), int(size[1])
        self.resize = resize
        self.channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError("expected images of shape (N, C, H, W)")
        if images.dtype == torch.uint8:
            x = images.to(torch.float32).div(255)
        else:
            x = images.to(torch.float32)
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)  # grey images as RGB, as datasets load them
        if x.shape[1] != self.channels:
            raise ValueError("the model takes images with " + str(self.channels) + " channels, got "
                             + str(x.shape[1]))
        if x.shape[2] != self.height or x.shape[3] != self.width:
            if not self.resize:
                raise ValueError("the model takes " + str(self.width) + "x" + str(self.height) + " px images, got "
                                 + str(x.shape[3]) + "x" + str(x.shape[2]))
            # Images already at the run's size pass untouched; others are resized as torchvision's
            # resize does (bilinear, antialiased).
            x = F.interpolate(x, size=[self.height, self.width], mode="bilinear", align_corners=False,
                              antialias=True)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)


class PortableClassifier(nn.Module):
    """Preprocessing, network, adjustment in float32: what ``export`` writes (TorchScript-ready;
    ``classes`` is a plain attribute, which TorchScript keeps as a List[str])."""

    def __init__(self, net: nn.Module, preprocess: Preprocess, classes: list[str],
                 logit_adjustment: torch.Tensor | None):
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.classes = list(classes)
        # zeros when the run has none: subtracting 0.0 leaves every logit bit-identical
        adjustment = torch.zeros(len(classes)) if logit_adjustment is None else logit_adjustment
        self.register_buffer("logit_adjustment", adjustment.detach().to(torch.float32).clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images)).float() - self.logit_adjustment


class Classifier(PortableClassifier):
    """What :func:`load_model` returns: ``model(images)`` -> adjusted logits (N, classes), under
    the run's precision; ``model.classes`` names the columns."""

    def __init__(self, net: nn.Module, preprocess: Preprocess, classes: list[str],
                 logit_adjustment: torch.Tensor | None, precision: str):
        super().__init__(net, preprocess, classes, logit_adjustment)
        self.precision = precision

    def raw_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The network's logits before the adjustment (what the run's test loss is computed on)."""
        x = self.preprocess(images)
        with autocast(x.device, self.precision):
            return self.net(x).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.raw_logits(images) - self.logit_adjustment

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(images), dim=1)

    def portable(self) -> PortableClassifier:
        """The same model in float32 without autocast (it shares the weights)."""
        return PortableClassifier(self.net, self.preprocess, self.classes, self.logit_adjustment).eval()


def load_model(run: Path | str, *, precision: str | None = None, device: torch.device | str = "cpu") -> Classifier:
    """The model of a finished classifier run, with its preprocessing inside (see the module doc).

    ``precision`` defaults to the one the run was evaluated under (config.json's precision_used):
    bf16 autocast gives other low bits than fp32, and the run's figures are those of its own."""
    return _build(open_run(run), precision, device)


def _build(run: FinishedRun, precision: str | None, device: torch.device | str) -> Classifier:
    from longtail.models import build_from_arch

    ckpt = run.checkpoint
    precision = precision or run.config.get("precision_used") or "fp32"
    if precision not in ("bf16", "fp32"):
        raise LongtailError(f"precision must be bf16 or fp32, got {precision!r}")
    # Built and loaded as the run did (channels_last weights), so the kernels are the same ones.
    net = build_from_arch(ckpt["arch"]).to(memory_format=torch.channels_last)
    try:
        net.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise LongtailError(f"{run.path / 'checkpoint.pt'} does not fit its own architecture record ({first})") from None
    channels, height, width = run.image_shape
    resize = run.resize_to
    norm = ckpt["normalization"]
    preprocess = Preprocess(norm["mean"], norm["std"], resize or (height, width), resize is not None, channels)
    model = Classifier(net, preprocess, run.classes, ckpt.get("logit_adjustment"), precision)
    model.run_path = run.path
    return model.to(device).eval().requires_grad_(False)


# --- predict -------------------------------------------------------------------------------------


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
    """uint8 (channels, H, W) pixels of one image file; an unreadable one is refused by name."""
    from torchvision.io import ImageReadMode, decode_image

    from longtail.data.sources import MAX_IMAGE_PIXELS, MAX_MEMBER_BYTES

    try:
        size = path.stat().st_size
        if size > MAX_MEMBER_BYTES:
            raise LongtailError(f"{path} is {size} bytes, more than the {MAX_MEMBER_BYTES} byte limit for an image")
        data = path.read_bytes()
    except OSError as e:
        raise LongtailError(f"cannot read {path}: {e.strerror or e}") from None
    if not data:
        raise LongtailError(f"cannot decode image {path}: the file is empty")
    _check_pixels(path, data, MAX_IMAGE_PIXELS)
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except (RuntimeError, ValueError) as e:
        raise LongtailError(f"cannot decode image {path}: {_decode_reason(e)}") from None


def _decode_reason(e: Exception) -> str:
    """torchvision's message without its C++ source location, for a person."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "Unsupported image file" in text:
        return f"not a {DECODED_KINDS} file"
    return re.sub(r"^.*?\.cpp:\d+,\s*", "", text) or "not an image"


def _check_pixels(path: Path, data: bytes, limit: int) -> None:
    """Refuse an image whose header declares more than ``limit`` pixels, before decoding it."""
    from PIL import Image  # reads the header only; decoding stays with torchvision

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - torchvision's decoder gives the real error message
        return
    if w * h > limit:
        raise LongtailError(f"{path} declares {w}x{h} px, more than the {limit} pixel limit")


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]]  # (class, probability), most probable first


def predict(model: Classifier, files: Sequence[Path], top_k: int = 1) -> Iterator[Prediction]:
    """Top-``top_k`` classes of each image file, in file order.

    Files are decoded a batch at a time; images of one size are run through the model together,
    in batches of the run's own evaluation batch, so the kernels see the shapes the run's test did."""
    from longtail.run import EVAL_BATCH

    if top_k < 1:
        raise LongtailError(f"--top-k must be at least 1, got {top_k}")
    k = min(top_k, len(model.classes))
    channels = model.preprocess.channels
    for start in range(0, len(files), EVAL_BATCH):
        chunk = files[start:start + EVAL_BATCH]
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


# --- evaluate ------------------------------------------------------------------------------------


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
    from longtail.run import EVAL_BATCH

    finished = open_run(run, "evaluate")
    model = _build(finished, precision, "cpu")
    out = finished.path / f"evaluation-{evaluation_name(data)}.json"
    _check_replaceable_json(out)
    ds = load_dataset(data)
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
    for start in range(0, ds.test_labels.numel(), EVAL_BATCH):
        images, labels = ds.test_images[start:start + EVAL_BATCH], ds.test_labels[start:start + EVAL_BATCH]
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


# --- export --------------------------------------------------------------------------------------


def export(run: Path | str, fmt: str, out: Path | str | None = None) -> Path:
    """Write the run's model, preprocessing inside, as a TorchScript or ONNX file; returns its path.

    Both take uint8 images (N, C, H, W) at the run's image size; TorchScript also takes float
    images in [0, 1], and resizes others when the run has an image size. Both compute in float32."""
    if fmt not in FORMATS:
        raise LongtailError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    finished = open_run(run, "export")
    path = Path(out) if out is not None else finished.path / f"model{SUFFIXES[fmt]}"
    if path.exists() and not (path.is_file() and _is_our_export(path, fmt)):
        raise LongtailError(f"{path} exists and is not a model longtail exported; choose another --out")
    model = _build(finished, "fp32", "cpu").portable()
    mark = {"kind": "longtail-export", "run": str(finished.path), "classes": model.classes,
            "input": "uint8 (N, C, H, W) in [0, 255] or float in [0, 1]",
            "image_shape": [model.preprocess.channels, model.preprocess.height, model.preprocess.width],
            "output": "logits, post-hoc logit adjustment applied; softmax gives probabilities"}
    data = _torchscript_bytes(model, mark) if fmt == "torchscript" else _onnx_bytes(model, mark)
    atomic_write(path, lambda f: f.write(data))
    return path


def _example(model: PortableClassifier, batch: int = 2) -> torch.Tensor:
    pre = model.preprocess
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, pre.channels, pre.height, pre.width), dtype=torch.uint8, generator=g)


def _torchscript_bytes(model: PortableClassifier, mark: dict) -> bytes:
    # The network is traced (any architecture the registry builds traces; not all would script);
    # the wrapper is scripted, so its branches on dtype and size stay branches.
    pre = model.preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, still loads everywhere
        traced = torch.jit.trace(model.net, pre(_example(model)), check_trace=False)
        scripted = torch.jit.script(PortableClassifier(traced, pre, model.classes, model.logit_adjustment).eval())
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={EXPORT_MARK: json.dumps(mark)})
    return buffer.getvalue()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401 - torch.onnx.export's exporter needs it
    except ImportError as e:
        raise LongtailError(f"--format onnx needs the optional extra ({e.name} is not installed): "
                            f"{ONNX_EXTRA}") from None


def _onnx_bytes(model: PortableClassifier, mark: dict) -> bytes:
    import onnx

    example = _example(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False,
                                    verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {EXPORT_MARK: json.dumps(mark)})
    return proto.SerializeToString()


def _is_our_export(path: Path, fmt: str) -> bool:
    if fmt == "torchscript":
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(f"/extra/{EXPORT_MARK}") for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return any(p.key == EXPORT_MARK for p in proto.metadata_props)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False

