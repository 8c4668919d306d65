"""`doctor`: check the cache, and repair what can be repaired safely.

Checks the run registry (readable, `PRAGMA integrity_check`), every
registered prompt (file present, checksum, sidecar), orphan and half-written
files (prompts, projectors, tasks), the user-task registry (files present,
checksums), runs left "queued"/"running" by a process that died, and
finished runs without a result.

Work in progress is never a problem and never removed: a temporary or
unregistered file whose writer (recorded in the file) is still alive is only
a warning, and so is a run whose process is alive. `check()` is cheap enough
for the app's start page; `check(fix=True)` (`doctor --fix`) removes
half-written and orphan files, marks dead runs failed (so they can be rerun),
drops registry rows whose file is gone, moves corrupt prompt files to
`cache/quarantine/`, and rebuilds an unreadable database from the prompt
files' sidecars (the old file is kept next to it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

from .. import atomic, paths, store
from ..errors import PandaError

GRACE_SECONDS = 600.0  # files with no recorded writer count as abandoned after this long
UPLOAD_MAX_AGE = 3600.0


def check(fix: bool = False) -> dict:
    """Returns {"ok", "problems": [...], "warnings": [...], "fixed": [...],
    "checked": {...}}. `ok` is False when anything is lost, corrupt, orphaned
    or half-written (before fixing); warnings are work in progress."""
    report = _Report(fix)
    db_ok = _check_database(report)
    rows: list[dict] = []
    if db_ok:
        rows = _check_prompts(report)
        _check_runs(report)
    _check_prompt_files(report, db_ok)
    _check_projectors(report)
    _check_tasks(report)
    _check_uploads(report)
    return {"ok": not report.problems, "problems": report.problems, "warnings": report.warnings,
            "fixed": report.fixed, "checked": {"prompts": len(rows), "database": report.integrity,
                                                "runs": report.n_runs, "user_tasks": report.n_user_tasks}}


class _Report:
    def __init__(self, fix: bool) -> None:
        self.fix = fix
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.fixed: list[str] = []
        self.integrity = "unchecked"
        self.n_runs = 0
        self.n_user_tasks = 0

    def problem(self, text: str, repair=None, done: str | None = None) -> None:
        self.problems.append(text)
        if self.fix and repair is not None:
            try:
                repair()
                self.fixed.append(done or text)
            except (OSError, PandaError, sqlite3.Error) as err:
                self.warnings.append(f"could not fix '{text}': {str(err).splitlines()[0][:120]}")


# ------------------------------------------------------------------ database
def _check_database(report: _Report) -> bool:
    db = paths.db_path()
    try:
        conn = store.connect()
        try:
            report.integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except (PandaError, sqlite3.DatabaseError) as err:
        report.integrity = "unreadable"
        report.problem(f"database {db.name} is unreadable ({str(err).splitlines()[0][:100]})",
                       lambda: _rebuild_database(report), None)
        return bool(report.fix and report.fixed)
    if report.integrity != "ok":
        report.problem(f"database integrity: {report.integrity[:200]}",
                       lambda: _rebuild_database(report), None)
        return report.fix
    return True


def _rebuild_database(report: _Report) -> None:
    """Move the broken database aside and register every prompt whose sidecar
    checksum matches its file again (run history stays in the old file)."""
    db = paths.db_path()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    keep = db.with_name(f"{db.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(db) + suffix)
        if src.exists():
            src.replace(Path(str(keep) + suffix))
    store.forget(db)
    n = 0
    for f in sorted(paths.prompts_dir().glob("*.safetensors")):
        side = f.with_suffix(".json")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            digest = meta.pop("sha256")
            if store.sha256_file(f) != digest:
                continue
            with store.transaction() as conn:
                store.register_prompt_row(conn, f.stem, meta, digest)
            n += 1
        except (OSError, ValueError, KeyError, TypeError):
            continue
    report.fixed.append(f"database rebuilt: {n} prompts registered again; the old file is {keep.name}")


# ------------------------------------------------------------------ prompts
def _check_prompts(report: _Report) -> list[dict]:
    rows = store.prompt_rows()
    for row in rows:
        pid = row["id"]
        try:
            path = store.prompt_path(pid)
        except PandaError:
            report.problem(f"prompt row {pid!r}: invalid id", lambda pid=pid: store.drop_prompt_row(pid))
            continue
        side = path.with_suffix(".json")
        if not path.exists():
            report.problem(f"prompt {pid}: file missing (registered but lost)",
                           lambda pid=pid: store.drop_prompt_row(pid), f"prompt {pid}: registry row removed")
        elif store.sha256_file(path) != row["sha256"]:
            report.problem(f"prompt {pid}: checksum mismatch (file changed or corrupt)",
                           lambda pid=pid, path=path: _quarantine_prompt(pid, path),
                           f"prompt {pid}: moved to quarantine/ and unregistered")
        elif not _sidecar_ok(side, row["sha256"]):
            report.problem(f"prompt {pid}: sidecar {side.name} missing or stale",
                           lambda side=side, row=row: atomic.write_json(
                               side, json.loads(row["meta"]) | {"sha256": row["sha256"]}),
                           f"prompt {pid}: sidecar rewritten")
    return rows


def _sidecar_ok(side: Path, digest: str) -> bool:
    try:
        return json.loads(side.read_text(encoding="utf-8")).get("sha256") == digest
    except (OSError, ValueError, AttributeError):
        return False


def _quarantine_prompt(pid: str, path: Path) -> None:
    q = paths.sub("quarantine")
    for f in (path, path.with_suffix(".json")):
        if f.exists():
            f.replace(q / f.name)
    store.drop_prompt_row(pid)


def _writer_state(path: Path, writer: str | None) -> bool:
    """True while the process that wrote the file may still register it: it
    is alive, or it runs on another machine. A file whose writer is unknown
    (no token: not written by `save_prompt`) is nobody's work in progress."""
    if not writer:
        return False
    alive = atomic.token_alive(writer)
    return True if alive is None else alive


def _young(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def _tmp_files(report: _Report, folder: Path, label: str) -> None:
    for f in sorted(folder.iterdir()):
        if not atomic.is_tmp(f) or f.is_symlink() or not f.is_file():
            continue
        if atomic.stale_tmp(f, max_age=GRACE_SECONDS):
            report.problem(f"half-written file {label}{f.name} (its writer died)",
                           lambda f=f: f.unlink(missing_ok=True), f"removed half-written {label}{f.name}")
        else:
            report.warnings.append(f"{label}{f.name} is being written by a running process")


def _check_prompt_files(report: _Report, db_ok: bool) -> None:
    folder = paths.prompts_dir()
    _tmp_files(report, folder, "prompts/")
    if not db_ok:
        return
    for f in sorted(folder.glob("*.safetensors")):
        if atomic.is_tmp(f):
            continue
        pid = f.stem
        state = _writer_state(f, store.prompt_writer(f))
        if store.is_registered(pid):  # liveness first, then the row: a dead writer cannot add it later
            continue
        if state:
            report.warnings.append(f"prompt file {f.name} is being saved by a running process")
            continue
        report.problem(f"orphan prompt file {f.name} (no database row: its save was interrupted)",
                       lambda f=f: (f.unlink(missing_ok=True), f.with_suffix(".json").unlink(missing_ok=True)),
                       f"removed orphan prompt file {f.name}")
    for side in sorted(folder.glob("*.json")):
        if side.with_suffix(".safetensors").exists() or atomic.is_tmp(side):
            continue
        report.problem(f"orphan sidecar {side.name} (no prompt file)", lambda side=side: side.unlink(missing_ok=True),
                       f"removed orphan sidecar {side.name}")


def _check_projectors(report: _Report) -> None:
    folder = paths.cache_dir() / "projectors"
    if not folder.is_dir():
        return
    _tmp_files(report, folder, "projectors/")
    for f in sorted(folder.glob("*.safetensors")):
        side = f.with_suffix(".json")
        if not side.exists():
            if _young(f, 120.0):  # a projector is saved file first, sidecar a moment later
                continue
            report.problem(f"orphan projector file {f.name} (no sidecar: its save was interrupted)",
                           lambda f=f: f.unlink(missing_ok=True), f"removed orphan projector {f.name}")
        else:
            try:
                digest = json.loads(side.read_text(encoding="utf-8")).get("sha256")
            except (OSError, ValueError, AttributeError):
                digest = None
            if digest != store.sha256_file(f):
                report.problem(f"projector {f.stem}: checksum mismatch (file changed or corrupt)",
                               lambda f=f, side=side: [p.replace(paths.sub("quarantine") / p.name) for p in (f, side)],
                               f"projector {f.stem}: moved to quarantine/")


# ------------------------------------------------------------------ runs
def _check_runs(report: _Report) -> None:
    from .jobs import DEAD_ERROR, run_is_dead

    runs = store.list_runs(limit=1_000_000)
    report.n_runs = len(runs)
    known = {r["id"] for r in store.prompt_rows()}
    for run in runs:
        rid = run["id"]
        if run["status"] in ("queued", "running"):
            if run_is_dead(run):
                report.problem(f"run {rid}: status {run['status']} but its process is gone",
                               lambda rid=rid: store.fail_dead_run(rid, DEAD_ERROR),
                               f"run {rid}: marked failed (rerun it)")
        elif run["status"] == "done":
            if run.get("result") is None:
                report.problem(f"run {rid}: marked done but has no result",
                               lambda rid=rid: store.update_run(rid, status="failed", error="no result recorded; rerun it"),
                               f"run {rid}: marked failed")
            if run.get("prompt_id") and run["prompt_id"] not in known:
                report.warnings.append(f"run {rid}: its prompt {run['prompt_id']} is no longer in the store")


# ------------------------------------------------------------------ tasks
@contextlib.contextmanager
def _try_user_lock():
    """The user-task lock without waiting: yields False when someone holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield True
        return
    lock = paths.tasks_dir() / ".user.lock"
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_tasks(report: _Report) -> None:
    from ..data import OFFLINE

    root = paths.tasks_dir()
    _tmp_files(report, root, "tasks/")
    manifest = root / "manifest.json"
    if manifest.exists():
        try:
            json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report.problem("tasks/manifest.json is unreadable", lambda: manifest.unlink(),
                           "removed tasks/manifest.json: run `python -m panda_core data prepare`")
    registry_path = root / "user_tasks.json"
    if not registry_path.exists() and not any(
            d.is_dir() and not d.is_symlink() and d.name not in OFFLINE for d in root.iterdir()):
        return
    with _try_user_lock() as free:
        if not free:
            report.warnings.append("a user task is being added right now; its files were not checked")
            return
        registry: dict = {}
        if registry_path.exists():
            try:
                registry = json.loads(registry_path.read_text(encoding="utf-8"))
                if not isinstance(registry, dict):
                    raise ValueError
            except (OSError, ValueError):
                report.problem("tasks/user_tasks.json is unreadable (user tasks are unknown)")
                registry = {}
        report.n_user_tasks = len(registry)
        for name, entry in sorted(registry.items()):
            folder = root / name
            files = entry.get("files") if isinstance(entry, dict) else None
            if not isinstance(files, dict):
                report.problem(f"user task {name}: registry entry is malformed; add the task again")
                continue
            for fname, digest in sorted(files.items()):
                f = folder / fname
                if not f.is_file():
                    report.problem(f"user task {name}: {fname} is missing; add the task again")
                elif store.sha256_file(f) != digest:
                    report.problem(f"user task {name}: {fname} does not match its checksum (an interrupted "
                                   "re-add or an edit); add the task again")
        for d in sorted(root.iterdir()):
            if not d.is_dir() or d.is_symlink():
                continue
            _tmp_files(report, d, f"tasks/{d.name}/")
            if d.name in OFFLINE or d.name in registry or d.name.startswith("."):
                continue
            meta = d / "meta.json"
            try:
                source = json.loads(meta.read_text(encoding="utf-8")).get("source")
            except (OSError, ValueError, AttributeError):
                source = None
            if source not in (None, "user"):
                continue
            report.problem(f"orphan task folder tasks/{d.name} (not registered: adding it was interrupted)",
                           lambda d=d: shutil.rmtree(d), f"removed orphan task folder tasks/{d.name}")


def _check_uploads(report: _Report) -> None:
    root = paths.cache_dir() / "uploads"
    if not root.is_dir():
        return
    for d in sorted(root.iterdir()):
        try:
            age = time.time() - d.stat().st_mtime
        except OSError:
            continue
        if age > UPLOAD_MAX_AGE:
            report.problem(f"leftover upload folder uploads/{d.name}",
                           lambda d=d: shutil.rmtree(d) if d.is_dir() else d.unlink(),
                           f"removed leftover upload uploads/{d.name}")
