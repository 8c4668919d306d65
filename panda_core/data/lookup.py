"""Lookups over every origin: a loop over `TASK_SOURCES`, never a branch on
the origin. Importing this module registers the three built-in sources."""

from __future__ import annotations

from ..errors import PandaError
from . import hub, offline, user  # noqa: F401 (each registers its TaskSource)
from .base import TASK_SOURCES, task_sources
from .examples import SPLITS, Example, TaskSpec


def get_task(name: str) -> TaskSpec:
    """The spec of any known task (offline, hub or user)."""
    for source in task_sources():
        if source.handles(name):
            return source.spec(name)
    known = [n for source in task_sources() for n in source.names()]
    raise PandaError(f"unknown task '{name}'; known tasks: {', '.join(known)}")


def list_tasks() -> list[dict]:
    """Every task with its availability and split sizes; reads local files only (no network)."""
    return [row for source in task_sources() for row in source.status()]


def available_tasks(family: str | None = None) -> list[str]:
    """Names of tasks that can be loaded now, optionally of one family."""
    return [t["name"] for t in list_tasks() if t["available"] and (family is None or t["family"] == family)]


def load_split(name: str, split: str) -> list[Example]:
    """The examples of one split; cached in-process (reloaded when the file changes)."""
    if split not in SPLITS:
        raise PandaError(f"unknown split '{split}'; use one of: {', '.join(SPLITS)}")
    spec = get_task(name)
    return TASK_SOURCES.get(spec.source).load_split(spec, split)


def majority_of_test(name: str, n: int, digits: int = 4) -> float | None:
    """The majority-class accuracy on the first `n` test items of task `name`:
    the baseline every scored accuracy is read against (None when n is 0)."""
    from ..stats import majority_accuracy

    labels = [ex.label for ex in load_split(name, "test")[:n]]
    return round(majority_accuracy(labels), digits) if labels else None


__all__ = ["get_task", "list_tasks", "available_tasks", "load_split", "majority_of_test"]
