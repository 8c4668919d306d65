"""Atomic file writes: write to a temporary file in the same folder, fsync,
then rename. A reader never sees a half-written file.

Temporary files carry the writer's process token in their name
(`.NAME.<host>-<pid>-<start>.<random>.tmp`), so `doctor` can tell a file
being written right now by a live process from one left behind by a process
that was killed, and never deletes work in progress.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

_TMP_RE = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)\.[^./]+\.tmp$")


# ------------------------------------------------------------------ process identity
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[19])
    except (ValueError, IndexError):
        return None


def process_token(pid: int | None = None) -> str:
    """`<host>:<pid>:<start>` of this (or the given) process: survives pid reuse."""
    pid = os.getpid() if pid is None else pid
    return f"{_host()}:{pid}:{_start_ticks(pid) or 0}"


def token_alive(token: str | None) -> bool | None:
    """True/False for a token of this machine; None when it cannot be judged
    (another machine, or a malformed token)."""
    if not token:
        return None
    try:
        host, pid_s, start_s = token.split(":")
        pid, start = int(pid_s), int(start_s)
    except ValueError:
        return None
    if host != _host():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            text = stat.read_text()
            state = text[text.rindex(")") + 2:].split()[0]
        except (OSError, ValueError, IndexError):
            return True
        if state in ("Z", "X"):  # a zombie has finished
            return False
        now_start = _start_ticks(pid)
        if start and now_start is not None and now_start != start:
            return False  # the pid was reused by another process
    return True


def tmp_writer(path: Path) -> str | None:
    """The process token encoded in a temporary file's name, or None."""
    m = _TMP_RE.search(Path(path).name)
    if not m:
        return None
    return f"{m['host']}:{m['pid']}:{m['start']}"


def is_tmp(path: Path) -> bool:
    return Path(path).name.startswith(".") and Path(path).name.endswith(".tmp")


def stale_tmp(path: Path, max_age: float = 6 * 3600) -> bool:
    """A temporary file nobody is writing any more: its writer is dead, or
    (writer unknown) it is older than `max_age` seconds."""
    alive = token_alive(tmp_writer(path))
    if alive is False:
        return True
    if alive is None:
        try:
            return time.time() - Path(path).stat().st_mtime > max_age
        except OSError:
            return False
    return False


# ------------------------------------------------------------------ writes
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = process_token().replace(":", "-")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{tag}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def copy_file(src: Path, dest: Path) -> None:
    """Copy a file atomically (the destination appears complete or not at all)."""
    write_bytes(Path(dest), Path(src).read_bytes())


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (checksums of archives,
    prompt files and projectors)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
