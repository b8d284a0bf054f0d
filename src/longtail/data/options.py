"""How a dataset is loaded: the settings that change its pixels or its splits, checked once.

``image_size`` and ``resize`` decide what every image is turned into as it is decoded;
``test_fraction`` and ``split_seed`` decide which images form the test split of a dataset that
has none; ``root`` is where a file list's paths start. :class:`LoadOptions` holds them in one
normal form, so that two loads with the same options share one decoded cache and a study's
dataset can be reused by every run whose options match.

Torch-free: config.py declares the ``image_size`` setting with :class:`ImageSize` as its type,
and ``longtail --help`` must not import torch.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Any

from longtail.errors import LongtailError

# Smaller images are refused when they are not resized (sources.MIN_IMAGE_SIDE), and a size
# below that is not what anyone means by --image-size.
MIN_SIDE = 16
# The pixel limit of one source image is 4096x4096 (images.MAX_IMAGE_PIXELS); larger targets
# would only upsample, at up to 48 MiB per decoded image.
MAX_SIDE = 4096
RESIZE_MODES = ("crop", "stretch")
DEFAULT_RESIZE = "crop"

_SIZE_TEXT = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?$")


def _size_message(value: Any) -> str:
    return (f"the image size must be N or HxW (height x width) with every side from {MIN_SIDE} to {MAX_SIDE} px, "
            f"got {value!r}")


class _ImageSizeType(type):
    """``isinstance(v, ImageSize)``: what config.json and a TOML file may hold, an int or [h, w].
    The sides' range is checked by :func:`image_size_hw` (and by the setting's bounds for an int)."""

    def __instancecheck__(cls, value: Any) -> bool:
        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        return whole(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(whole, value)))


class ImageSize(metaclass=_ImageSizeType):
    """The type of the ``image_size`` setting.

    Called on a flag's text (argparse calls a flag's type), it returns what config.json records:
    ``"128"`` -> ``128``, ``"96x128"`` -> ``[96, 128]`` (inference reads that form back). It never
    makes an instance; it is a class only so the settings machinery can use it as a type.
    """

    def __new__(cls, text: str) -> Any:  # type: ignore[misc]
        m = _SIZE_TEXT.match(text)
        if not m:
            raise argparse.ArgumentTypeError(_size_message(text))
        sides = [int(g) for g in m.groups() if g is not None]
        if not all(MIN_SIDE <= s <= MAX_SIDE for s in sides):
            raise argparse.ArgumentTypeError(_size_message(text))
        return sides[0] if len(sides) == 1 else sides


def image_size_hw(value: Any) -> tuple[int, int] | None:
    """(height, width) of an ``image_size`` setting (None, N or [h, w]); a one-line error otherwise."""
    if value is None:
        return None
    if isinstance(value, str):  # a caller's own text, e.g. "96x128"
        try:
            value = ImageSize(value)
        except argparse.ArgumentTypeError as e:
            raise LongtailError(str(e)) from None
    if not isinstance(value, ImageSize):
        raise LongtailError(_size_message(value))
    h, w = (value, value) if isinstance(value, int) else value
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise LongtailError(_size_message(value))
    return int(h), int(w)


@dataclass(frozen=True)
class LoadOptions:
    """The normal form of what changes a dataset beyond its files. Fields that do not apply are
    None (``resize`` without a size, ``split_seed`` without a test fraction), so equal loads
    compare equal."""

    size: tuple[int, int] | None = None  # (height, width) to resize to at decode
    resize: str | None = None  # crop | stretch, set exactly when size is
    test_fraction: float | None = None
    split_seed: int | None = None  # set exactly when test_fraction is
    root: str | None = None  # where a file list's paths start

    @classmethod
    def create(cls, image_size: Any = None, resize: str | None = None, test_fraction: float | None = None,
               split_seed: int | None = 0, root: str | None = None) -> LoadOptions:
        size = image_size_hw(image_size)
        if resize is not None and resize not in RESIZE_MODES:
            raise LongtailError(f"unknown resize mode {resize!r}; choose from {', '.join(RESIZE_MODES)}")
        if resize is not None and size is None:
            raise LongtailError(f"--resize {resize} needs --image-size N (or HxW): the size to resize to")
        if test_fraction is not None:
            if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                    or not math.isfinite(test_fraction) or not 0 < test_fraction < 1:
                raise LongtailError(f"--test-fraction must be a number between 0 and 1 (exclusive), got "
                                    f"{test_fraction!r}")
        if root is not None and (not isinstance(root, str) or not root.strip()):
            raise LongtailError("--root is empty; give the folder the file list's paths start from")
        return cls(size, (resize or DEFAULT_RESIZE) if size else None,
                   float(test_fraction) if test_fraction is not None else None,
                   int(split_seed or 0) if test_fraction is not None else None, root)

    @classmethod
    def of(cls, settings: Any) -> LoadOptions:
        """The options of run settings (a RunSettings) or of a run's config.json (a dict)."""
        get = settings.get if isinstance(settings, dict) else lambda k: getattr(settings, k, None)
        return cls.create(get("image_size"), get("resize"), get("test_fraction"), get("split_seed"), get("root"))

    def key(self) -> str:
        """What of these options changes the decoded images (and so the cache key and fingerprint);
        empty for a plain load, so a plain load keeps its source's fingerprint."""
        parts = []
        if self.size:
            parts.append(f"size={self.size[0]}x{self.size[1]}:{self.resize}")
        if self.test_fraction is not None:
            parts.append(f"test-fraction={self.test_fraction!r}:seed={self.split_seed}")
        return ",".join(parts)

    def describe(self) -> str:
        """For ``data info``: what was done to the images, or ''."""
        if not self.size:
            return ""
        how = "shorter side scaled to fit, centre kept" if self.resize == "crop" else "stretched"
        return f"resized at decode to {self.size[0]}x{self.size[1]} (height x width; {self.resize}: {how})"
