"""Prepared tasks on disk: tasks_dir()/<name>/{train,dev,test}.jsonl + meta.json,
the offline manifest (manifest.json), the user-task registry (user_tasks.json),
their locks, and the in-process cache of split files.

Every write is atomic (`panda_core.atomic`), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..atomic import write_json, write_text
from ..paths import tasks_dir
from .examples import SPLITS, Example
from .sources import file_lock


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, for a one-line error or reason."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lock(name: str = "prepare") -> contextlib.AbstractContextManager[None]:
    """One writer at a time for manifest.json ("prepare") or user_tasks.json ("user"), since the
    app and the CLI may run together; separate locks so adding a user task never waits for a build."""
    return file_lock(tasks_dir() / f".{name}.lock")


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def manifest() -> dict:
    """The offline manifest: {"tasks": {name: entry}, "unavailable": {name: reason}, "version": 1}."""
    m = read_json(tasks_dir() / "manifest.json", {})
    m.setdefault("tasks", {})
    m.setdefault("unavailable", {})
    return m


def save_manifest(m: dict) -> None:
    m["version"] = 1
    write_json(tasks_dir() / "manifest.json", m)


def user_registry() -> dict[str, dict]:
    """user_tasks.json: name -> {"spec": {...}, "files": {...}, "n_train": ..., ...}."""
    return read_json(tasks_dir() / "user_tasks.json", {})


def save_user_registry(registry: dict[str, dict]) -> None:
    write_json(tasks_dir() / "user_tasks.json", registry)


def has_split_files(name: str) -> bool:
    folder = tasks_dir() / name
    return all((folder / f"{s}.jsonl").is_file() for s in SPLITS)


def _jsonl(examples: list[Example]) -> bytes:
    return "".join(json.dumps({"text_a": e.text_a, "text_b": e.text_b, "label": e.label}, ensure_ascii=False) + "\n"
                   for e in examples).encode("utf-8")


def store(name: str, splits: dict[str, list[Example]], meta: dict) -> dict:
    """Write the split files and meta.json atomically; returns file checksums and counts."""
    folder = tasks_dir() / name
    files, counts = {}, {}
    for split in SPLITS:
        data = _jsonl(splits[split])
        write_text(folder / f"{split}.jsonl", data.decode("utf-8"))
        files[f"{split}.jsonl"] = sha256_bytes(data)
        counts[f"n_{split}"] = len(splits[split])
    label_counts = {split: dict(sorted(Counter(e.label for e in splits[split]).items())) for split in SPLITS}
    write_json(folder / "meta.json", {**meta, **counts, "files": files, "label_counts": label_counts})
    return {"files": files, **counts}


_CACHE: dict[tuple[str, str], tuple[tuple[int, int], list[Example]]] = {}


def _read_jsonl(path: Path) -> list[Example]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                out.append(Example(d["text_a"], int(d["label"]), d.get("text_b")))
    return out


def read_split(name: str, split: str) -> list[Example] | None:
    """The examples of a stored split, None when its file is missing; cached in-process
    (reloaded when the file changes)."""
    path = tasks_dir() / name / f"{split}.jsonl"
    try:
        st = path.stat()
    except OSError:
        return None
    ckey = (str(path), split)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(ckey)
    if hit is None or hit[0] != stamp:
        hit = (stamp, _read_jsonl(path))
        _CACHE[ckey] = hit
    return list(hit[1])


__all__ = ["one_line", "sha256_bytes", "lock", "read_json", "manifest", "save_manifest", "user_registry",
           "save_user_registry", "has_split_files", "store", "read_split"]
