"""One decoded image -> the dataset's size, as it is decoded (never the whole set at full size).

``crop``: scale so the image covers the target (for a square N, its shorter side becomes N),
then keep the centre, as torchvision's ``Resize(N)`` + ``CenterCrop(N)`` do. ``stretch``: scale
each axis to the target, changing the aspect ratio. Both scale with torchvision's antialiased
bilinear resize, on uint8 as decoded (its native uint8 path rounds to the nearest level).
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF


def covering_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """The size ``crop`` scales an image to before cutting ``target`` out of its centre: the
    aspect ratio kept, both sides at least the target's."""
    th, tw = target
    scale = max(th / height, tw / width)
    return max(th, round(height * scale)), max(tw, round(width * scale))


def resize_image(img: torch.Tensor, target: tuple[int, int], mode: str) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, *target)."""
    h, w = img.shape[-2:]
    if (h, w) == tuple(target):
        return img
    if mode == "stretch":
        return TF.resize(img, list(target), antialias=True)
    if mode != "crop":
        raise ValueError(f"unknown resize mode {mode!r}")
    scaled = TF.resize(img, list(covering_size(h, w, target)), antialias=True)
    return TF.center_crop(scaled, list(target)).contiguous()
