"""Files uploaded through the app: reduced to safe names and staged in a
private folder inside the cache that is removed afterwards, so a client-chosen
name can never write outside it."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .. import atomic, paths
from ..errors import PandaError


def safe_filename(name: str, default: str = "upload") -> str:
    """A client-supplied file name reduced to one safe path component:
    no folders, no `..`, no leading dot, no control characters."""
    base = str(name or "").replace("\\", "/").split("/")[-1]
    base = re.sub(r"[^A-Za-z0-9._\- ]+", "_", base).strip(" .")
    base = base.lstrip(".-") or default
    if len(base) > 120:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:100] + dot + ext[:16]) if dot and len(ext) <= 16 else base[:120]
    return base


@contextmanager
def staged_upload(files: list[tuple[str, bytes]]) -> Iterator[Path]:
    """Write uploaded (name, bytes) pairs into a private folder inside the
    cache (`cache/uploads/<random>/`) and yield it; the folder is removed
    afterwards whatever happens. Names are sanitised with `safe_filename`, so
    nothing lands outside that folder."""
    root = paths.sub("uploads")
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True)  # parents: another session may have just removed the empty root
    try:
        used: set[str] = set()
        for name, data in files:
            safe = safe_filename(name)
            if safe in used:
                raise PandaError(f"two uploaded files are both named '{safe}'; upload them one at a time")
            used.add(safe)
            dest = (folder / safe).resolve()
            if dest.parent != folder.resolve():  # pragma: no cover - safe_filename already forbids it
                raise PandaError(f"refusing the upload name {name!r}")
            atomic.write_bytes(dest, bytes(data))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with suppress(OSError):
            root.rmdir()  # only when empty: leave other sessions' uploads alone
