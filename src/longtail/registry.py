"""Named registries of methods (losses, rebalancers, profiles, augmentations, tasks, ...).

One class serves every registry so that "unknown X" reads the same everywhere and the names a
flag's help lists are the names the code accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from longtail.errors import LongtailError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A dict of name -> method that knows what its entries are called, for error messages."""

    def __init__(self, what: str, entries: dict[str, T] | None = None):
        super().__init__(entries or {})
        self.what = what

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""
        def add(entry: T) -> T:
            self[name] = entry
            return entry

        return add

    def choices(self) -> str:
        return ", ".join(self)

    def check(self, name: str) -> str:
        if name not in self:
            raise LongtailError(f"unknown {self.what} {name!r}; choose from {self.choices()}")
        return name

    def get_entry(self, name: str) -> T:
        return self[self.check(name)]
