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


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache for the prompt store and database; tasks and models are
    linked from the project cache so nothing is downloaded again."""
    root = tmp_path / "cache"
    root.mkdir()
    for name in ("tasks", "models", "downloads"):
        src = PROJECT_CACHE / name
        if src.exists():
            (root / name).symlink_to(src, target_is_directory=True)
    monkeypatch.setenv("PANDA_CACHE", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)
