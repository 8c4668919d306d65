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


@pytest.fixture
def no_models(monkeypatch):
    """Fail loudly if anything tries to load a model, and keep the hub closed:
    for work that must run on prompts alone (foreign backbones, imports)."""
    from panda_core.backbones import loading

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.delenv("PANDA_ALLOW_HUB", raising=False)
    for name in ("_load_hub", "_load_folder", "_load_registry"):
        monkeypatch.setattr(loading, name, refuse)


@pytest.fixture
def zoo(tmp_path, monkeypatch) -> Path:
    """An empty zoo folder of the test's own (`PANDA_ZOO_DIR`), never the shipped one."""
    from panda_core.zoo import files as zoo_files

    folder = tmp_path / "zoo"
    folder.mkdir()
    monkeypatch.setenv(zoo_files.ENV, str(folder))
    return folder

