"""One small registry type for every extension point (transfer methods,
indicators, backbone kinds, job kinds, readouts, prompt types).

An entry registers itself in its own module; everything downstream (the CLI's
choices, the app's selectors and labels, the sweep planner, validation and the
report) reads the registry, so adding an entry touches one file and its test.
Modules holding entries are imported by the package that owns the registry
(its ``__init__``), so a registry is complete as soon as that package is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import PandaError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries in registration order; each entry has a ``name`` and a
    human ``label``. Unknown names raise one-line `PandaError`s that list the
    valid choices."""

    def __init__(self, what: str) -> None:
        self.what = what  # "transfer method", "indicator", ... (used in errors)
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add an entry (usable as a class decorator on an instance factory's result)."""
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.what} needs a non-empty string `name`")
        if name in self._entries:
            raise ValueError(f"{self.what} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def add(self, factory: Callable[[], T]) -> Callable[[], T]:
        """Class decorator: instantiate the class with no arguments and register it."""
        self.register(factory())
        return factory

    def get(self, name: str) -> T:
        value = getattr(name, "value", name)  # accept str enums
        try:
            return self._entries[value]
        except (KeyError, TypeError):
            raise PandaError(f"unknown {self.what} '{name}'; choose from {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return getattr(name, "value", name) in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def labels(self) -> dict[str, str]:
        """name -> human label (the name itself when an entry has no label)."""
        return {n: getattr(e, "label", n) for n, e in self._entries.items()}
