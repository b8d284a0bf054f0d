"""How a network's config dataclass becomes a checkpoint's arch record and back: JSON holds lists
where the config holds tuples (sizes, widths)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any


class ArchConfig:
    """Mixin for a frozen dataclass config: ``to_dict`` for the arch record, ``from_dict`` to rebuild
    it (every field whose default is a tuple comes back as one)."""

    def to_dict(self) -> dict:
        record = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        tuples = {f.name for f in fields(cls) if isinstance(f.default, tuple)}  # type: ignore[arg-type]
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})
