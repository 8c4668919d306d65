"""Prompt artifacts: a safetensors file plus a JSON sidecar per prompt, and
one database row that points to it.

Every file is written atomically (temporary file, fsync, rename) and the row
is written after the file exists, so a crash leaves at worst an orphan file
(reported by `doctor`), never a row that claims a missing or half-written
prompt. Nothing is ever unpickled: files are read through
`prompts.formats`, which checks them byte by byte.

"The prompt of a task" has ONE definition, `latest_prompt` (and
`latest_prompts` for many tasks at once): everything that picks a task's
prompt (transfers, similarity, validation, the pages) goes through it.

Prompts have an origin (`prompt_origin`): "zoo" for the prompts shipped with
the tool (`panda_core.zoo`, installed by `zoo install`), "user" for every
other one (trained here, imported, transferred). The user's own prompts
always win: among the prompts a caller asks for, a zoo prompt is *shadowed*
by any user prompt of the same task, backbone, method and type, whatever
their dates, so zoo prompts stand in only where the user has none
(`without_shadowed_zoo`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic, paths
from ..atomic import sha256_file
from ..errors import PandaError
from ..prompts.formats import inspect_safetensors, read_prompt_file
from ..prompts.soft_prompt import check_tensor
from .db import _query, transaction

if TYPE_CHECKING:
    from ..prompts import SoftPrompt

#: the origin of the prompts shipped with the tool (`extra["origin"]` of their metadata)
ZOO = "zoo"
#: the origin of every other prompt: trained here, imported, transferred
USER = "user"

_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")
_LIST_COLUMNS = "id, task, backbone, method, length, hidden_size, seed, created, prompt_type, meta"


def new_prompt_id(prompt: SoftPrompt) -> str:
    """A fresh id naming the backbone, task, method and seed (readable in file listings)."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", Path(prompt.backbone).name)[:24] or "bb"
    task = re.sub(r"[^A-Za-z0-9_]+", "_", str(prompt.task))[:40] or "task"
    method = re.sub(r"[^A-Za-z0-9_]+", "_", str(prompt.method))[:20] or "m"
    return f"{safe}.{task}.{method}.s{prompt.seed}.{uuid.uuid4().hex[:8]}"


def prompt_path(prompt_id: str) -> Path:
    """The prompt's file in the cache; refuses ids that could name another path."""
    if not isinstance(prompt_id, str) or not _ID_RE.match(prompt_id) or prompt_id.startswith("."):
        raise PandaError(f"{prompt_id!r} is not a valid prompt id (letters, digits, . _ - only)")
    return paths.prompts_dir() / f"{prompt_id}.safetensors"


def register_prompt_row(conn: sqlite3.Connection, prompt_id: str, meta: dict[str, Any], digest: str) -> None:
    """Insert (or replace) the row of a prompt file from its metadata (the
    sidecar's fields): used by `save_prompt` and by `doctor` rebuilding the registry."""
    conn.execute(
        "INSERT OR REPLACE INTO prompts (id, task, backbone, method, length, hidden_size, seed, sha256, created, "
        "meta, prompt_type) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (prompt_id, meta["task"], meta["backbone"], meta["method"], int(meta["length"]), int(meta["hidden_size"]),
         meta.get("seed"), digest, float(meta["created"]), json.dumps(meta, default=str),
         str(meta.get("prompt_type") or "input")),
    )


def drop_prompt_row(prompt_id: str) -> None:
    """Unregister a prompt (its files are left alone)."""
    with transaction() as conn:
        conn.execute("DELETE FROM prompts WHERE id = ?", (prompt_id,))


def prompt_rows() -> list[dict[str, Any]]:
    """Every registered prompt's id, checksum and raw metadata (for `doctor`)."""
    return _query("SELECT id, sha256, meta FROM prompts")


def is_registered(prompt_id: str) -> bool:
    return bool(_query("SELECT 1 FROM prompts WHERE id=?", (prompt_id,)))


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
            register_prompt_row(conn, prompt.prompt_id, meta, digest)
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


def prompt_origin(meta: Any) -> str:
    """`ZOO` for a prompt shipped with the tool (its metadata's ``extra.origin``), else `USER`."""
    extra = meta.get("extra") if isinstance(meta, dict) else getattr(meta, "extra", None)
    return ZOO if isinstance(extra, dict) and extra.get("origin") == ZOO else USER


def list_prompts(backbone: str | None = None, task: str | None = None, method: str | None = None,
                 length: int | None = None, prompt_type: str | None = None,
                 origin: str | None = None) -> list[dict]:
    """Registered prompts matching the filters, oldest first (ties by id), each
    {"id", "task", "backbone", "method", "length", "hidden_size", "seed", "created", "prompt_type", "scores",
    "origin"} (`origin`: `ZOO` or `USER`, see `prompt_origin`)."""
    sql = f"SELECT {_LIST_COLUMNS} FROM prompts WHERE 1=1"
    args: list[Any] = []
    for col, val in (("backbone", backbone), ("task", task), ("method", method), ("length", length),
                     ("prompt_type", prompt_type)):
        if val is not None:
            sql += f" AND {col} = ?"
            args.append(val)
    rows = _query(sql + " ORDER BY created, id", tuple(args))
    for r in rows:
        meta = json.loads(r.pop("meta"))
        r["scores"] = meta.get("scores", {})
        r["origin"] = prompt_origin(meta)
    return [r for r in rows if origin is None or r["origin"] == origin]


def _slot(row: dict) -> tuple:
    """What a prompt stands for: one task's prompt of one method and type on one backbone."""
    return row["backbone"], row["task"], row["method"], row.get("prompt_type") or "input"


def without_shadowed_zoo(rows: list[dict]) -> list[dict]:
    """`rows` (as `list_prompts` gives them, already narrowed to what the caller
    asks for) without the zoo prompts that a user prompt among them shadows:
    one of the same task, backbone, method and type. The user's own prompts
    always win, whatever their dates. Order is kept."""
    mine = {_slot(r) for r in rows if r.get("origin") != ZOO}
    return [r for r in rows if r.get("origin") != ZOO or _slot(r) not in mine]


def latest_prompt(task: str, backbone: str, method: str = "pt", length: int | None = None,
                  prompt_type: str = "input") -> dict | None:
    """THE rule for "the prompt of a task": among the prompts of `method` on
    `backbone` and of `prompt_type` (a deep prompt never stands in for an
    input-level one, nor the reverse), of `length` tokens when given, the
    user's own ones when there are any (zoo prompts only stand in where the
    user has none, `without_shadowed_zoo`), and of those the newest (latest
    `created`, ties broken by id); the row as `list_prompts` gives it, or None."""
    rows = list_prompts(backbone=backbone, task=task, method=method, length=length, prompt_type=prompt_type)
    rows = without_shadowed_zoo(rows)
    return rows[-1] if rows else None  # list_prompts is oldest first


def latest_prompts(backbone: str, method: str = "pt", length: int | None = None,
                   tasks: list[str] | None = None, prompt_type: str = "input") -> dict[str, dict]:
    """`latest_prompt` for every task at once (one query): {task: row}, for
    `tasks` only when given; tasks without a prompt are absent."""
    rows = list_prompts(backbone=backbone, method=method, length=length, prompt_type=prompt_type)
    newest: dict[str, dict] = {}
    for row in without_shadowed_zoo([r for r in rows if tasks is None or r["task"] in tasks]):
        newest[row["task"]] = row  # oldest first: the last one is the newest
    return newest


def latest_prompt_id(task: str, backbone: str, method: str = "pt", length: int | None = None,
                     prompt_type: str = "input") -> str | None:
    """The id of `latest_prompt(...)`, or None."""
    row = latest_prompt(task, backbone, method, length, prompt_type)
    return row["id"] if row else None


def add_prompt_file(prompt_id: str, data: bytes, meta: dict[str, Any]) -> str:
    """Store a prompt file built elsewhere byte for byte (the zoo's files keep
    their checksum) and register it under `prompt_id`; returns its sha256.

    The bytes are checked as any prompt file is (`read_prompt_file`) before
    the row is written; the order and the clean-up on failure are
    `save_prompt`'s."""
    path = prompt_path(prompt_id)
    side = path.with_suffix(".json")
    atomic.write_bytes(path, data)
    try:
        read_prompt_file(path)  # refuses anything a prompt file may not be, before it is registered
        digest = sha256_file(path)
        atomic.write_json(side, json.loads(json.dumps(meta, default=str)) | {"sha256": digest})
        with transaction() as conn:
            register_prompt_row(conn, prompt_id, meta, digest)
    except BaseException:
        for p in (path, side):
            p.unlink(missing_ok=True)
        raise
    return digest


def delete_prompt(prompt_id: str) -> None:
    """Unregister a prompt and remove its files."""
    path = prompt_path(prompt_id)
    drop_prompt_row(prompt_id)
    for p in (path, path.with_suffix(".json")):
        p.unlink(missing_ok=True)
