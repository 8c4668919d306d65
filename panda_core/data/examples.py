"""The record types every task shares, whatever its origin, and the constants
of the split recipe.

`RECIPE` is part of every prepared task's manifest entry: bump it only when the
build of offline tasks changes, since `prepare()` then rebuilds every task.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    text_a: str
    label: int
    text_b: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    labels: tuple[str, ...]
    descriptions: tuple[str, ...]
    verbalizers: tuple[str, ...]
    source: str  # the origin: "offline" | "hub" | "user" (a TASK_SOURCES name)
    license: str
    citation: str
    description: str
    pair: bool = False
    hub: dict | None = None


SPLITS = ("train", "dev", "test")
CAPS = {"train": 20000, "dev": 500, "test": 1000}
MAX_CHARS = 2000
SEED = 0
RECIPE = 1  # bump when the build of offline tasks changes; prepare() then rebuilds
PREPARE_HINT = "python -m panda_core data prepare"

__all__ = ["Example", "TaskSpec", "SPLITS", "CAPS", "MAX_CHARS", "SEED", "RECIPE", "PREPARE_HINT"]
