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
import shutil
import sqlite3
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

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

MAX_PROMPT_BYTES = 64 * 1024 * 1024  # a 20 x 4096 float32 prompt is 320 KB
MAX_HEADER_BYTES = 1024 * 1024
MAX_TENSORS = 64
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
ALL_DTYPES = FLOAT_DTYPES | {"I8": 1, "U8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8,
                             "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_CONVERT_HINT = "convert it with safetensors.torch.save_file({'prompt': tensor.float()}, path)"
_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,300}$")


# ------------------------------------------------------------------ database
_READY: set[str] = set()
_RUN_COLUMNS = {"owner": "TEXT"}  # added after the first release: migrated in place


def connect(path: Path | None = None) -> sqlite3.Connection:
    """A connection with WAL, a busy timeout for concurrent writers and the schema.

    A file that is not an SQLite database raises a PandaError naming the fix."""
    db = Path(path or paths.db_path())
    try:
        conn = sqlite3.connect(db, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        if str(db) not in _READY:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            have = {r[1] for r in conn.execute("PRAGMA table_info(runs)").fetchall()}
            for col, kind in _RUN_COLUMNS.items():
                if col not in have:
                    try:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
                    except sqlite3.OperationalError as err:  # another process added it first
                        if "duplicate column" not in str(err):
                            raise
            _READY.add(str(db))
    except sqlite3.DatabaseError as err:
        raise PandaError(
            f"the run registry {db.name} is unreadable ({str(err).splitlines()[0][:80]}); "
            "run `python -m panda_core doctor --fix` to move it aside and rebuild it from the prompt files"
        ) from None
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
        if conn.in_transaction:
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


# ------------------------------------------------------------------ uploads
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
def staged_upload(files: list[tuple[str, bytes]]):
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


# ------------------------------------------------------------------ prompts
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_prompt_id(prompt: SoftPrompt) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", Path(prompt.backbone).name)[:24] or "bb"
    task = re.sub(r"[^A-Za-z0-9_]+", "_", str(prompt.task))[:40] or "task"
    method = re.sub(r"[^A-Za-z0-9_]+", "_", str(prompt.method))[:20] or "m"
    return f"{safe}.{task}.{method}.s{prompt.seed}.{uuid.uuid4().hex[:8]}"


def prompt_path(prompt_id: str) -> Path:
    if not isinstance(prompt_id, str) or not _ID_RE.match(prompt_id) or prompt_id.startswith("."):
        raise PandaError(f"{prompt_id!r} is not a valid prompt id (letters, digits, . _ - only)")
    return paths.prompts_dir() / f"{prompt_id}.safetensors"


def save_prompt(prompt: SoftPrompt) -> str:
    """Write the prompt (atomically) and register it; returns its id.

    Order: tensor file, sidecar, database row. A crash in between leaves an
    orphan file (reported and removed by `doctor`), never a row without its
    file; if the row cannot be written the files are removed again."""
    from safetensors.torch import save  # torch only where tensors are touched: waiting workers stay small

    check_tensor(prompt.tensor)
    prompt.prompt_id = prompt.prompt_id or new_prompt_id(prompt)
    tensors = {"prompt": prompt.tensor.detach().float().cpu().contiguous()}
    for name, value in (prompt.head or {}).items():
        tensors[f"head.{name}"] = value.detach().float().cpu().contiguous()
    meta = prompt.metadata()
    header = {"panda_meta": json.dumps(meta, sort_keys=True, default=str),
              "panda_writer": atomic.process_token()}
    path = prompt_path(prompt.prompt_id)
    side = path.with_suffix(".json")
    atomic.write_bytes(path, save(tensors, metadata=header))
    try:
        digest = sha256_file(path)
        atomic.write_json(side, json.loads(json.dumps(meta, default=str)) | {"sha256": digest})
        with transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO prompts VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    prompt.prompt_id, prompt.task, prompt.backbone, prompt.method, prompt.length,
                    prompt.hidden_size, prompt.seed, digest, prompt.created, json.dumps(meta, default=str),
                ),
            )
    except Exception:
        for p in (path, side):
            p.unlink(missing_ok=True)
        raise
    return prompt.prompt_id


def prompt_writer(path: Path) -> str | None:
    """The process token stored in a prompt file's header by `save_prompt`."""
    try:
        return inspect_safetensors(Path(path))[1].get("panda_writer")
    except PandaError:
        return None


def inspect_safetensors(path: Path, max_bytes: int = MAX_PROMPT_BYTES) -> tuple[dict, dict]:
    """Validate a safetensors file's framing without loading tensors or
    trusting anything in it. Returns ({name: {"dtype", "shape", ...}}, metadata).

    Refuses (one-line PandaError) pickles, torch.save zips, truncated files,
    absurd header lengths, malformed headers, unknown dtypes and tensors whose
    byte ranges do not add up."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise PandaError(f"prompt file not found: {path}") from None
    if not path.is_file():
        raise PandaError(f"{name} is not a file; give a .safetensors prompt file")
    if size > max_bytes:
        raise PandaError(f"{name} is {size / 2**20:.0f} MB, over the {max_bytes >> 20} MB limit for a prompt "
                         "file; a prompt is far smaller, so check that this is the right file")
    with open(path, "rb") as fh:
        head = fh.read(9)
        n = int.from_bytes(head[:8], "little")
        plausible = len(head) == 9 and head[8:9] == b"{" and 8 + n <= size
        if not plausible and head[:4] == b"PK\x03\x04":
            raise PandaError(f"{name} is a zip/torch.save file, which could run code when loaded; only "
                             f"safetensors prompts are accepted: {_CONVERT_HINT}")
        if not plausible and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise PandaError(f"{name} looks like a pickle/torch.save file, which could run code when loaded; "
                             f"only safetensors prompts are accepted: {_CONVERT_HINT}")
        if len(head) < 9:
            raise PandaError(f"{name} is not a readable safetensors file (only {size} bytes: truncated or empty); "
                             "export the prompt again")
        fh.seek(8)
        if n > MAX_HEADER_BYTES:
            raise PandaError(f"{name} is not a readable safetensors file (its header claims {n} bytes); "
                             "it is corrupt or another format: export the prompt again")
        if 8 + n > size:
            raise PandaError(f"{name} is not a readable safetensors file (truncated: header of {n} bytes, file of "
                             f"{size}); copy or export it again")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PandaError(f"{name} is not a readable safetensors file (its header is not JSON); "
                         "export the prompt again") from None
    if not isinstance(header, dict):
        raise PandaError(f"{name} is not a readable safetensors file (header is not an object); export it again")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise PandaError(f"{name} is not a readable safetensors file (its metadata must map text to text); "
                         "export it again")
    if len(header) > MAX_TENSORS:
        raise PandaError(f"{name} holds {len(header)} tensors; a prompt file holds a prompt (and a head)")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        bad = f"{name} is not a readable safetensors file (tensor {key[:40]!r} is malformed); export it again"
        if not isinstance(info, dict):
            raise PandaError(bad)
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in ALL_DTYPES:
            raise PandaError(f"{name}: tensor {key[:40]!r} has unknown dtype {str(dtype)[:20]!r}; "
                             "save the prompt as float32")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise PandaError(bad)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise PandaError(bad)
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if not 0 <= begin <= end <= data_len or end - begin != count * ALL_DTYPES[dtype]:
            raise PandaError(f"{name} is not a readable safetensors file (tensor {key[:40]!r} does not fit in the "
                             "file: truncated or corrupt); export it again")
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise PandaError(f"{name} is not a readable safetensors file (overlapping or missing tensor data); "
                             "export it again")
        pos = end
    if pos != data_len:
        raise PandaError(f"{name} is not a readable safetensors file ({data_len - pos} stray bytes after the "
                         "tensors); export it again")
    return header, meta


_META_TYPES: dict[str, tuple[type, ...]] = {
    "backbone": (str,), "task": (str,), "method": (str,), "seed": (int,), "steps": (int,),
    "source_prompt": (str, type(None)), "scores": (dict,), "created": (int, float), "code_version": (str,),
    "extra": (dict,),
}


def _clean_meta(meta: dict, name: str, tensor) -> dict:
    """The provenance fields a SoftPrompt takes, type-checked; refuses
    metadata that contradicts the tensor."""
    out: dict[str, Any] = {}
    for key, types in _META_TYPES.items():
        if key not in meta:
            continue
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise PandaError(f"{name}: metadata field '{key}' has the wrong type ({type(value).__name__}); "
                             "export the prompt again")
        if key in ("backbone", "task", "method") and not _TEXT_RE.match(value):
            raise PandaError(f"{name}: metadata field '{key}' is empty, too long or has control characters; "
                             "export the prompt again")
        if key in ("seed", "steps") and abs(value) >= 2**63:
            raise PandaError(f"{name}: metadata field '{key}' is out of range; export the prompt again")
        if key == "created" and not (0 <= value < 1e11):
            raise PandaError(f"{name}: metadata field 'created' is not a time; export the prompt again")
        out[key] = value
    if "scores" in out and not all(isinstance(k, str) and (v is None or isinstance(v, (int, float)))
                                   for k, v in out["scores"].items()):
        raise PandaError(f"{name}: metadata 'scores' must map names to numbers; export the prompt again")
    for key, actual in (("length", tensor.shape[0]), ("hidden_size", tensor.shape[1])):
        if key in meta and meta[key] != actual:
            raise PandaError(f"{name}: metadata says {key} {str(meta[key])[:20]} but the tensor has {actual} "
                             "(file edited or corrupt); export the prompt again")
    return out


def read_prompt_file(path: Path) -> SoftPrompt:
    """Read a safetensors prompt file, validating everything; never unpickles.

    Every problem (not safetensors, a pickle or zip, truncated, wrong dtype,
    NaN/Inf, metadata that contradicts the tensor, ...) is a one-line PandaError."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    header, raw_meta = inspect_safetensors(path)
    if "prompt" not in header:
        names = ", ".join(sorted(k[:40] for k in header)[:8]) or "none"
        raise PandaError(f"{path.name} has no 'prompt' tensor (found: {names}); save the prompt under the key 'prompt'")
    info = header["prompt"]
    if info["dtype"] not in FLOAT_DTYPES:
        raise PandaError(f"{path.name}: prompt dtype {info['dtype']} is not a float type; save it as float32")
    if len(info["shape"]) != 2:
        raise PandaError(f"{path.name}: a prompt must be a 2-D tensor (tokens x hidden), got shape "
                         f"{tuple(info['shape'])}")
    for key, hinfo in header.items():
        if key.startswith("head.") and hinfo["dtype"] not in FLOAT_DTYPES:
            raise PandaError(f"{path.name}: head tensor '{key[5:45]}' has dtype {hinfo['dtype']}; save it as float32")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise PandaError(f"{path.name} is not a readable safetensors file ({first}); export the prompt again") from None
    tensor = tensors["prompt"]
    check_tensor(tensor, where=path.name)
    tensor = tensor.float()  # float64 values beyond float32's range become Inf: check again
    check_tensor(tensor, where=path.name)
    try:
        meta = json.loads(raw_meta.get("panda_meta", "{}"))
    except (ValueError, RecursionError):
        raise PandaError(f"{path.name}: its panda_meta metadata is not JSON; export the prompt again") from None
    if not isinstance(meta, dict):
        raise PandaError(f"{path.name}: its panda_meta metadata is not a JSON object; export the prompt again")
    kwargs = _clean_meta(meta, path.name, tensor)
    head = {k[5:]: v.float() for k, v in tensors.items() if k.startswith("head.")} or None
    if head is not None:
        w, b = head.get("weight"), head.get("bias")
        if (set(head) != {"weight", "bias"} or w.dim() != 2 or b.dim() != 1 or w.shape[0] != b.shape[0]
                or w.shape[1] != tensor.shape[1] or w.shape[0] < 1):
            raise PandaError(f"{path.name}: its head must be weight (classes x {tensor.shape[1]}) and bias "
                             "(classes); export the prompt again")
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise PandaError(f"{path.name}: its head contains NaN or Inf values; retrain or re-export it")
    kwargs.setdefault("backbone", "unknown")
    kwargs.setdefault("task", "unknown")
    return SoftPrompt(tensor=tensor, head=head, **kwargs)


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
    """Record a run. A run created as "running" is owned by this process
    (host, pid and start time in `owner`), so `doctor` can tell when it died."""
    run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = time.time()
    owner = atomic.process_token() if status == "running" else None
    with transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, kind, method, source, target, backbone, status, config, key, owner, created, updated)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, kind, method, source, target, backbone, status, json.dumps(config, default=str), key, owner,
             now, now),
        )
    return run_id


def update_run(run_id: str, status: str | None = None, result: dict | None = None,
               error: str | None = None, prompt_id: str | None = None, pid: int | None = None,
               progress: dict | None = None, cancel: bool | None = None) -> None:
    """Update a run in one transaction. Setting status "running" makes this
    process the run's owner."""
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
    if status == "running":
        sets.append("owner = ?")
        args.append(atomic.process_token())
    if result is not None:
        sets.append("result = ?")
        args.append(json.dumps(result, default=str))
    with transaction() as conn:
        conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))


def fail_dead_run(run_id: str, error: str) -> bool:
    """Mark an active run failed, unless it finished meanwhile; True when marked."""
    with transaction() as conn:
        cur = conn.execute("UPDATE runs SET status='failed', error=?, updated=? "
                           "WHERE id=? AND status IN ('queued', 'running')", (error, time.time(), run_id))
        return cur.rowcount == 1


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
    background runs are running and no older launched job still waits (jobs
    start in the order they were submitted); False means: wait and try again."""
    with transaction() as conn:
        busy = conn.execute("SELECT COUNT(*) FROM runs WHERE status='running' AND pid IS NOT NULL").fetchone()[0]
        if busy >= max_running:
            return False
        older = conn.execute(
            "SELECT COUNT(*) FROM runs WHERE status='queued' AND pid IS NOT NULL AND id != ? AND "
            "(created < (SELECT created FROM runs WHERE id=?) OR "
            " (created = (SELECT created FROM runs WHERE id=?) AND id < ?))",
            (run_id, run_id, run_id, run_id)).fetchone()[0]
        if older:
            return False
        cur = conn.execute("UPDATE runs SET status='running', owner=?, updated=? WHERE id=? AND status='queued'",
                           (atomic.process_token(), time.time(), run_id))
        return cur.rowcount == 1


def cancel_requested(run_id: str) -> bool:
    rows = _query("SELECT cancel FROM runs WHERE id=?", (run_id,))
    return bool(rows and rows[0]["cancel"])
