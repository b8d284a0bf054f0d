"""A finished classifier run as a model that takes images as a decoder gives them.

Using a finished classifier run: load_model, predict, evaluate, export.

The model a run leaves behind expects normalized float batches from the loader; the model here
takes images as they come from a decoder and does the rest itself, so a user (or an exported
file) cannot get the preprocessing wrong:

    images (N, C, H, W): uint8 in [0, 255], or float in [0, 1] (torchvision's convention)
      -> float in [0, 1] -> resized to the run's image size (only when the run has one)
      -> normalized with the run's per-channel mean and std -> the network
      -> times the run's logit scale (LDAM's s on a cosine head; 1 otherwise)
      -> logits minus the run's post-hoc logit adjustment (if it was evaluated with one)

The output is those adjusted logits: their argmax is the run's prediction, their softmax the
probabilities ``longtail predict`` prints. The operations and their order are the loader's and
``tasks.classify.confusion``'s, under the run's precision, so predictions of the run's own test
images reproduce its summary.json exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from longtail.config import PRECISIONS
from longtail.device import autocast
from longtail.errors import LongtailError
from longtail.runs import is_run_config, load_checkpoint, read_json


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
    if not is_run_config(config):
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
    scale = checkpoint.get("logit_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise LongtailError(f"{path / 'checkpoint.pt'} has a logit scale of {str(scale)[:40]!r}, not a positive number")
    return FinishedRun(path, config, summary, checkpoint)


class Preprocess(nn.Module):
    """Decoder output -> the normalized batch the network was trained on (see the module doc).

    TorchScript-compatible, so an exported model carries it. The steps are the loader's
    (``BatchLoader.epoch`` and ``normalize``), op for op, so the numbers are identical.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: tuple[int, int], resize: bool,
                 channels: int, crop: bool = True):
        super().__init__()
        self.crop = crop  # the run's --resize: crop (cover, then the centre) or stretch
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
            # Images already at the run's size pass untouched; others are resized as the dataset
            # was at decode (data/resize.py): bilinear and antialiased, cropped or stretched.
            h, w = x.shape[2], x.shape[3]
            if self.crop:
                scale = max(self.height / h, self.width / w)
                nh, nw = max(self.height, int(round(h * scale))), max(self.width, int(round(w * scale)))
                x = F.interpolate(x, size=[nh, nw], mode="bilinear", align_corners=False, antialias=True)
                top, left = int(round((nh - self.height) / 2.0)), int(round((nw - self.width) / 2.0))
                x = x[:, :, top:top + self.height, left:left + self.width]
            else:
                x = F.interpolate(x, size=[self.height, self.width], mode="bilinear", align_corners=False,
                                  antialias=True)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)


class PortableClassifier(nn.Module):
    """Preprocessing, network, adjustment in float32: what ``export`` writes (TorchScript-ready;
    ``classes`` is a plain attribute, which TorchScript keeps as a List[str])."""

    def __init__(self, net: nn.Module, preprocess: Preprocess, classes: list[str],
                 logit_adjustment: torch.Tensor | None, logit_scale: float = 1.0):
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.classes = list(classes)
        # zeros when the run has none: subtracting 0.0 leaves every logit bit-identical
        adjustment = torch.zeros(len(classes)) if logit_adjustment is None else logit_adjustment
        self.register_buffer("logit_adjustment", adjustment.detach().to(torch.float32).clone())
        # times 1.0 leaves every logit bit-identical
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale), dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images)).float() * self.logit_scale - self.logit_adjustment


class Classifier(PortableClassifier):
    """What :func:`load_model` returns: ``model(images)`` -> adjusted logits (N, classes), under
    the run's precision; ``model.classes`` names the columns."""

    def __init__(self, net: nn.Module, preprocess: Preprocess, classes: list[str],
                 logit_adjustment: torch.Tensor | None, precision: str, logit_scale: float = 1.0):
        super().__init__(net, preprocess, classes, logit_adjustment, logit_scale)
        self.precision = precision

    def raw_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The network's logits, scaled, before the adjustment (what the run's test loss is computed on)."""
        x = self.preprocess(images)
        with autocast(x.device, self.precision):
            return self.net(x).float() * self.logit_scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.raw_logits(images) - self.logit_adjustment

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(images), dim=1)

    def portable(self) -> PortableClassifier:
        """The same model in float32 without autocast (it shares the weights)."""
        return PortableClassifier(self.net, self.preprocess, self.classes, self.logit_adjustment,
                                  float(self.logit_scale)).eval()


def load_model(run: Path | str, *, precision: str | None = None, device: torch.device | str = "cpu") -> Classifier:
    """The model of a finished classifier run, with its preprocessing inside (see the module doc).

    ``precision`` defaults to the one the run was evaluated under (config.json's precision_used):
    bf16 autocast gives other low bits than fp32, and the run's figures are those of its own."""
    return build_classifier(open_run(run), precision, device)


def build_classifier(run: FinishedRun, precision: str | None, device: torch.device | str) -> Classifier:
    from longtail.models import build_from_arch

    ckpt = run.checkpoint
    precision = precision or run.config.get("precision_used") or "fp32"
    if precision not in PRECISIONS:
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
    preprocess = Preprocess(norm["mean"], norm["std"], resize or (height, width), resize is not None, channels,
                            crop=run.config.get("resize") != "stretch")
    # runs from before the scale was stored predict on the bare outputs, as they were evaluated
    model = Classifier(net, preprocess, run.classes, ckpt.get("logit_adjustment"), precision,
                       ckpt.get("logit_scale", 1.0))
    model.run_path = run.path
    return model.to(device).eval().requires_grad_(False)
