"""Where things live on disk. Everything downloaded or computed goes under the
cache directory (default ./cache next to the package, or $PANDA_CACHE)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The cache root, created on first use."""
    root = Path(os.environ.get("PANDA_CACHE", REPO_ROOT / "cache")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sub(*parts: str) -> Path:
    """A folder inside the cache, created on first use."""
    path = cache_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    return sub("downloads")


def tasks_dir() -> Path:
    return sub("tasks")


def models_dir() -> Path:
    return sub("models")


def prompts_dir() -> Path:
    return sub("prompts")


def db_path() -> Path:
    return cache_dir() / "runs.sqlite"
