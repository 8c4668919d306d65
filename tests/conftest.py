"""Shared fixtures. Tests use a private cache folder for anything they write,
except the prepared task data and backbones, which are read from the project
cache (built by `make test`'s set-up step)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from panda_core import paths  # noqa: E402

PROJECT_CACHE = paths.cache_dir()


def link_project_data(root: Path) -> None:
    """Share the prepared tasks and models with a private cache, without letting
    a test write into the project's task registry (user tasks stay private)."""
    for name in ("models", "downloads"):
        src = PROJECT_CACHE / name
        if src.exists():
            (root / name).symlink_to(src, target_is_directory=True)
    tasks = root / "tasks"
    tasks.mkdir()
    src_tasks = PROJECT_CACHE / "tasks"
    if src_tasks.exists():
        for item in src_tasks.iterdir():
            if item.is_dir():
                (tasks / item.name).symlink_to(item, target_is_directory=True)
            elif item.name != "user_tasks.json":
                shutil.copy(item, tasks / item.name)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache for the prompt store and database; tasks and models are
    linked from the project cache so nothing is downloaded again."""
    root = tmp_path / "cache"
    root.mkdir()
    link_project_data(root)
    monkeypatch.setenv("PANDA_CACHE", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)
