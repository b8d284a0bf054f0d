"""Images chosen by index, gathered only when asked: what a run's splits are.

A run's training set is its source's training images after a validation hold-out, a subset, an
imbalance profile and oversampling: each step only chooses rows. :class:`IndexedImages` keeps
those choices as an index into the source tensor (which may be a memory-mapped file larger than
memory), so preparing a run copies no pixels; the loader gathers ``source[index[batch]]`` one
batch at a time. Augmented copies made by a rebalancer are appended as a second, in-memory part.

Indexing gathers the rows asked for and returns a plain tensor, as indexing a tensor would.
Any torch function (``torch.equal``, ...) or ``.to()`` applied to the view as a whole gathers
every row first: convenient for tests and small sets, never what a run's path does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch


class IndexedImages:
    """Rows ``index`` of the concatenation of ``parts`` (uint8 tensors of one (C, H, W) shape)."""

    def __init__(self, parts: Sequence[torch.Tensor], index: torch.Tensor):
        self.parts = tuple(parts)
        shapes = {tuple(p.shape[1:]) for p in self.parts}
        if not self.parts or len(shapes) != 1 or any(p.dtype != self.parts[0].dtype for p in self.parts):
            raise ValueError("the parts must share one dtype and one (C, H, W) shape")
        self.index = index.to(torch.int64)
        self._row_shape = shapes.pop()

    @classmethod
    def of(cls, images: torch.Tensor | IndexedImages) -> IndexedImages:
        """Every row of ``images``, in order (a view of it, not a copy)."""
        if isinstance(images, IndexedImages):
            return images
        return cls([images], torch.arange(images.shape[0]))

    # --- what the loader and channel_stats ask of an image tensor ---
    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.index.numel(), *self._row_shape))

    @property
    def dtype(self) -> torch.dtype:
        return self.parts[0].dtype

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    @property
    def ndim(self) -> int:
        return 1 + len(self._row_shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self.shape.numel()

    def __len__(self) -> int:
        return self.index.numel()

    # --- choosing rows: index arithmetic only ---
    def take(self, rows: torch.Tensor) -> IndexedImages:
        """The view of rows ``rows`` of this view (nothing is gathered)."""
        return IndexedImages(self.parts, self.index[rows])

    def with_rows(self, extra: torch.Tensor) -> IndexedImages:
        """This view followed by the rows of ``extra`` (a new part, e.g. augmented copies)."""
        start = sum(p.shape[0] for p in self.parts)
        return IndexedImages(self.parts + (extra,), torch.cat([self.index, torch.arange(start, start + extra.shape[0])]))

    # --- gathering pixels ---
    def __getitem__(self, key: Any) -> torch.Tensor:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        rows = self.index[key]
        out = self._gather(rows.reshape(-1)).view(*rows.shape, *self._row_shape)
        return out[(slice(None),) * rows.dim() + rest] if rest else out

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1:
            return self.parts[0][rows]
        out = torch.empty((rows.numel(), *self._row_shape), dtype=self.dtype)
        start = 0
        for part in self.parts:
            mine = (rows >= start) & (rows < start + part.shape[0])
            if bool(mine.any()):
                out[mine] = part[rows[mine] - start]
            start += part.shape[0]
        return out

    def materialize(self) -> torch.Tensor:
        """Every row as one in-memory tensor (a copy)."""
        return self[:]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.materialize())

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.materialize().to(*args, **kwargs)

    def __repr__(self) -> str:
        return f"IndexedImages({len(self)} rows of {len(self.parts)} part(s), shape {tuple(self.shape)})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_gathered(args), **_gathered(kwargs or {}))


# What a split's images may be: a tensor, or a view of one.
Images = torch.Tensor | IndexedImages


def _gathered(value: Any) -> Any:
    if isinstance(value, IndexedImages):
        return value.materialize()
    if isinstance(value, (list, tuple)):
        return type(value)(_gathered(v) for v in value)
    if isinstance(value, dict):
        return {k: _gathered(v) for k, v in value.items()}
    return value


def select_rows(images: Images, rows: torch.Tensor) -> Images:
    """``images[rows]``: a view when ``images`` is one (no pixels copied), else a tensor as before."""
    return images.take(rows) if isinstance(images, IndexedImages) else images[rows]


def append_rows(images: Images, extra: torch.Tensor) -> Images:
    """``images`` followed by ``extra``: a view when ``images`` is one, else ``torch.cat``."""
    return images.with_rows(extra) if isinstance(images, IndexedImages) else torch.cat([images, extra])
