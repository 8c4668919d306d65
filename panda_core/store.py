"""The cache: prompt artifacts (safetensors + JSON sidecar) and the run
registry (one SQLite database in WAL mode).

Every artifact is written atomically (temporary file, fsync, rename) and the
database row that points to it is written after the file exists, so a crash
leaves at worst an orphan file (reported by `doctor`), never a row that claims
a missing or half-written prompt. Nothing is ever unpickled: tensors are read
with safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import atomic, paths
from .errors import PandaError
from .prompts import SoftPrompt, check_tensor

SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    backbone TEXT NOT NULL,
    method TEXT NOT NULL,
    length INTEGER NOT NULL,
    hidden_size INTEGER NOT NULL,
    seed INTEGER,
    sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS prompts_by_task ON prompts(backbone, task, method);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- train | transfer | project
    method TEXT NOT NULL,
    source TEXT,
    target TEXT NOT NULL,
    backbone TEXT NOT NULL,
    status TEXT NOT NULL,          -- queued | running | done | failed | cancelled
    config TEXT NOT NULL,
    result TEXT,
    error TEXT,
    prompt_id TEXT,
    key TEXT,                      -- identity of the work, for resumable sweeps
    pid INTEGER,                   -- worker process, for background jobs
    progress TEXT,                 -- latest progress dict (JSON)
    cancel INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs(key, status);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    split TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, split, step)
);
"""

_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")


# ------------------------------------------------------------------ database
def connect(path: Path | None = None) -> sqlite3.Connection:
    """A connection with WAL, a busy timeout for concurrent writers and the schema."""
    conn = sqlite3.connect(path or paths.db_path(), timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    return conn


@contextmanager
def transaction():
    """One immediate (write-locked) transaction; rolled back on any error."""
    conn = connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _query(sql: str, args: tuple = ()) -> list[dict[str, Any]]:
    conn = connect()
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


# ------------------------------------------------------------------ prompts
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_prompt_id(prompt: SoftPrompt) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", Path(prompt.backbone).name)[:24] or "bb"
    return f"{safe}.{prompt.task}.{prompt.method}.s{prompt.seed}.{uuid.uuid4().hex[:8]}"


def prompt_path(prompt_id: str) -> Path:
    if not _ID_RE.match(prompt_id) or prompt_id.startswith("."):
        raise PandaError(f"'{prompt_id}' is not a valid prompt id (letters, digits, . _ - only)")
    return paths.prompts_dir() / f"{prompt_id}.safetensors"


def save_prompt(prompt: SoftPrompt) -> str:
    """Write the prompt (atomically) and register it; returns its id."""
    check_tensor(prompt.tensor)
    prompt.prompt_id = prompt.prompt_id or new_prompt_id(prompt)
    tensors = {"prompt": prompt.tensor.detach().float().cpu().contiguous()}
    for name, value in (prompt.head or {}).items():
        tensors[f"head.{name}"] = value.detach().float().cpu().contiguous()
    meta = prompt.metadata()
    header = {"panda_meta": json.dumps(meta, sort_keys=True, default=str)}
    path = prompt_path(prompt.prompt_id)
    atomic.write_bytes(path, save(tensors, metadata=header))
    digest = sha256_file(path)
    atomic.write_json(path.with_suffix(".json"), meta | {"sha256": digest})
    with transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO prompts VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                prompt.prompt_id, prompt.task, prompt.backbone, prompt.method, prompt.length,
                prompt.hidden_size, prompt.seed, digest, prompt.created, json.dumps(meta, default=str),
            ),
        )
    return prompt.prompt_id


def read_prompt_file(path: Path) -> SoftPrompt:
    """Read a safetensors prompt file, validating everything; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise PandaError(f"prompt file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80" or head[:2] == b"PK":
        raise PandaError(f"{path.name} looks like a pickle/torch.save file; only safetensors prompts are accepted")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise PandaError(f"{path.name} is not a readable safetensors file ({str(err).splitlines()[0][:120]})") from None
    if "prompt" not in tensors:
        names = ", ".join(sorted(tensors)) or "none"
        raise PandaError(f"{path.name} has no 'prompt' tensor (found: {names}); save the prompt under the key 'prompt'")
    tensor = tensors["prompt"]
    check_tensor(tensor, where=path.name)
    try:
        meta = json.loads(header.get("panda_meta", "{}"))
    except json.JSONDecodeError:
        meta = {}
    head = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")} or None
    known = {f for f in SoftPrompt.__dataclass_fields__ if f not in ("tensor", "head")}
    kwargs = {k: v for k, v in meta.items() if k in known}
    kwargs.setdefault("backbone", "unknown")
    kwargs.setdefault("task", "unknown")
    return SoftPrompt(tensor=tensor.float(), head=head, **kwargs)


def load_prompt(
    prompt_id: str, backbone: str | None = None, hidden_size: int | None = None, length: int | None = None
) -> SoftPrompt:
    """Load a registered prompt, checking its checksum and (when given) that it
    fits the backbone, hidden size and length the caller needs."""
    path = prompt_path(prompt_id)
    rows = _query("SELECT sha256 FROM prompts WHERE id = ?", (prompt_id,))
    if not rows:
        raise PandaError(f"unknown prompt '{prompt_id}'; list them with `python -m panda_core prompts list`")
    if not path.exists():
        raise PandaError(f"prompt '{prompt_id}' is registered but its file is missing; run `python -m panda_core doctor`")
    if sha256_file(path) != rows[0]["sha256"]:
        raise PandaError(f"prompt '{prompt_id}' failed its checksum (file changed or corrupt); retrain it")
    prompt = read_prompt_file(path)
    prompt.prompt_id = prompt_id
    if backbone is not None:
        prompt.check_compatible(backbone, hidden_size or prompt.hidden_size, length)
    return prompt


def list_prompts(backbone: str | None = None, task: str | None = None, method: str | None = None) -> list[dict]:
    sql = "SELECT id, task, backbone, method, length, hidden_size, seed, created, meta FROM prompts WHERE 1=1"
    args: list[Any] = []
    for col, val in (("backbone", backbone), ("task", task), ("method", method)):
        if val is not None:
            sql += f" AND {col} = ?"
            args.append(val)
    rows = _query(sql + " ORDER BY created", tuple(args))
    for r in rows:
        r["scores"] = json.loads(r.pop("meta")).get("scores", {})
    return rows


def latest_prompt_id(task: str, backbone: str, method: str = "pt", length: int | None = None) -> str | None:
    """The newest prompt for (task, backbone, method), or None."""
    sql = "SELECT id FROM prompts WHERE task=? AND backbone=? AND method=?"
    args: list[Any] = [task, backbone, method]
    if length is not None:
        sql += " AND length=?"
        args.append(length)
    rows = _query(sql + " ORDER BY created DESC LIMIT 1", tuple(args))
    return rows[0]["id"] if rows else None


def delete_prompt(prompt_id: str) -> None:
    path = prompt_path(prompt_id)
    with transaction() as conn:
        conn.execute("DELETE FROM prompts WHERE id = ?", (prompt_id,))
    for p in (path, path.with_suffix(".json")):
        p.unlink(missing_ok=True)


# --------------------------------------------------------------------- runs
def create_run(
    kind: str, method: str, target: str, backbone: str, config: dict, source: str | None = None,
    key: str | None = None, status: str = "running",
) -> str:
    run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = time.time()
    with transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, kind, method, source, target, backbone, status, config, key, created, updated)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, kind, method, source, target, backbone, status, json.dumps(config, default=str), key, now, now),
        )
    return run_id


def update_run(run_id: str, status: str | None = None, result: dict | None = None,
               error: str | None = None, prompt_id: str | None = None, pid: int | None = None,
               progress: dict | None = None, cancel: bool | None = None) -> None:
    sets, args = ["updated = ?"], [time.time()]
    if progress is not None:
        sets.append("progress = ?")
        args.append(json.dumps(progress, default=str))
    if cancel is not None:
        sets.append("cancel = ?")
        args.append(int(cancel))
    for col, val in (("status", status), ("error", error), ("prompt_id", prompt_id), ("pid", pid)):
        if val is not None:
            sets.append(f"{col} = ?")
            args.append(val)
    if result is not None:
        sets.append("result = ?")
        args.append(json.dumps(result, default=str))
    with transaction() as conn:
        conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))


def add_curve_point(run_id: str, step: int, value: float, split: str = "dev") -> None:
    with transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO curves VALUES (?,?,?,?)", (run_id, step, split, value))


def curve(run_id: str, split: str = "dev") -> list[tuple[int, float]]:
    rows = _query("SELECT step, value FROM curves WHERE run_id=? AND split=? ORDER BY step", (run_id, split))
    return [(r["step"], r["value"]) for r in rows]


def get_run(run_id: str) -> dict | None:
    rows = _query("SELECT * FROM runs WHERE id = ?", (run_id,))
    return _decode_run(rows[0]) if rows else None


def list_runs(kind: str | None = None, status: str | None = None, limit: int = 500) -> list[dict]:
    sql, args = "SELECT * FROM runs WHERE 1=1", []
    for col, val in (("kind", kind), ("status", status)):
        if val is not None:
            sql += f" AND {col} = ?"
            args.append(val)
    rows = _query(sql + " ORDER BY created DESC LIMIT ?", (*args, limit))
    return [_decode_run(r) for r in rows]


def done_run_for_key(key: str) -> dict | None:
    rows = _query("SELECT * FROM runs WHERE key=? AND status='done' ORDER BY updated DESC LIMIT 1", (key,))
    return _decode_run(rows[0]) if rows else None


def _decode_run(row: dict) -> dict:
    row = dict(row)
    row["config"] = json.loads(row["config"]) if row.get("config") else {}
    row["result"] = json.loads(row["result"]) if row.get("result") else None
    row["progress"] = json.loads(row["progress"]) if row.get("progress") else None
    return row


def claim_run(run_id: str, max_running: int) -> bool:
    """Atomically move a queued run to running if fewer than `max_running`
    background runs are running; False means: wait and try again."""
    with transaction() as conn:
        busy = conn.execute("SELECT COUNT(*) FROM runs WHERE status='running' AND pid IS NOT NULL").fetchone()[0]
        if busy >= max_running:
            return False
        cur = conn.execute("UPDATE runs SET status='running', updated=? WHERE id=? AND status='queued'",
                           (time.time(), run_id))
        return cur.rowcount == 1


def cancel_requested(run_id: str) -> bool:
    rows = _query("SELECT cancel FROM runs WHERE id=?", (run_id,))
    return bool(rows and rows[0]["cancel"])
