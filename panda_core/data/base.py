"""The `TaskSource` protocol and the `TASK_SOURCES` registry: one entry per
origin of tasks (offline packages, the Hugging Face hub, user files).

Lookups (`get_task`, `list_tasks`, `load_split`) loop over the registry in
`rank` order instead of branching on the origin, so a new origin is one new
module that registers a `TaskSource` (plus its import in `data/lookup.py`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..registry import Registry
from .examples import Example, TaskSpec


@runtime_checkable
class TaskSource(Protocol):
    """Where tasks of one origin come from.

    `name` is the origin as written in `TaskSpec.source` and in `list_tasks()`
    rows; `rank` orders origins in listings and lookups (a name is looked up in
    the first source that handles it)."""

    name: str
    label: str
    rank: int

    def handles(self, task: str) -> bool:
        """Whether `task` is one of this origin's tasks (cheap; no network)."""
        ...

    def spec(self, task: str) -> TaskSpec:
        """The spec of a task this source handles."""
        ...

    def names(self) -> list[str]:
        """The task names of this origin, in listing order."""
        ...

    def status(self) -> list[dict]:
        """One `list_tasks()` row per task: name, family, labels, source, license,
        available, n_train/n_dev/n_test (None when unknown) and `reason` when unavailable."""
        ...

    def load_split(self, spec: TaskSpec, split: str) -> list[Example]:
        """The examples of one split (`split` already checked), or a one-line `PandaError`."""
        ...


class CatalogueSource:
    """Base for a source whose tasks are a fixed catalogue (`catalogue.OFFLINE`, `HUB`):
    lookups are dict lookups; subclasses add `status` and `load_split`."""

    catalogue: dict[str, TaskSpec] = {}

    def handles(self, task: str) -> bool:
        return task in self.catalogue

    def spec(self, task: str) -> TaskSpec:
        return self.catalogue[task]

    def names(self) -> list[str]:
        return list(self.catalogue)


TASK_SOURCES: Registry[TaskSource] = Registry("task source")


def task_sources() -> list[TaskSource]:
    """The registered sources in lookup order."""
    return sorted(TASK_SOURCES, key=lambda s: s.rank)


__all__ = ["TaskSource", "CatalogueSource", "TASK_SOURCES", "task_sources"]
