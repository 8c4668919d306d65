"""The run registry: one row per recorded operation (train, transfer,
project, ...) with its status, config, result and dev curve.

    queued -> running -> done | failed | cancelled

A run created or set "running" is owned by the writing process (host, pid
and start time in `owner`), so `doctor` and the job queue can tell when it
died. `get_run`/`list_runs` return plain JSON-ready dicts (what the CLI
prints and the pages index); `Run` is the same record typed, and also reads
like that dict (`run["status"]`, `run.get("result")`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import atomic
from .db import _query, transaction

ACTIVE = ("queued", "running")
_JSON_COLUMNS = ("config", "result", "progress")


@dataclass(frozen=True)
class Run(Mapping):
    """One run of the registry, decoded (config/result/progress are dicts)."""

    id: str
    kind: str
    method: str
    target: str
    backbone: str
    status: str
    created: float
    updated: float
    source: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    prompt_id: str | None = None
    key: str | None = None
    pid: int | None = None
    progress: dict[str, Any] | None = None
    cancel: int = 0
    owner: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Run:
        """From a database row (JSON columns as text) or a decoded run dict;
        columns this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in _decode(row).items() if k in names})

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # read like the dict `get_run` returns
    def __getitem__(self, name: str) -> Any:
        if not isinstance(name, str) or name.startswith("_") or name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


def _decode(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for col in _JSON_COLUMNS:
        value = out.get(col)
        if isinstance(value, (str, bytes)):
            out[col] = json.loads(value) if value else None
    out["config"] = out.get("config") or {}
    return out


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
               progress: dict | None = None, cancel: bool | None = None, key: str | None = None,
               config: dict | None = None) -> None:
    """Update a run in one transaction. Setting status "running" makes this
    process the run's owner; `key` names the work a queued run turned out to be
    (so identical work submitted later finds and reuses it), `config` the
    settings it resolved to."""
    sets, args = ["updated = ?"], [time.time()]
    if progress is not None:
        sets.append("progress = ?")
        args.append(json.dumps(progress, default=str))
    if cancel is not None:
        sets.append("cancel = ?")
        args.append(int(cancel))
    for col, val in (("status", status), ("error", error), ("prompt_id", prompt_id), ("pid", pid), ("key", key)):
        if val is not None:
            sets.append(f"{col} = ?")
            args.append(val)
    if status == "running":
        sets.append("owner = ?")
        args.append(atomic.process_token())
    if result is not None:
        sets.append("result = ?")
        args.append(json.dumps(result, default=str))
    if config is not None:
        sets.append("config = ?")
        args.append(json.dumps(config, default=str))
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
    """The run's (step, value) points of `split`, by step."""
    rows = _query("SELECT step, value FROM curves WHERE run_id=? AND split=? ORDER BY step", (run_id, split))
    return [(r["step"], r["value"]) for r in rows]


def get_run(run_id: str) -> dict | None:
    """The run as a JSON-ready dict (config/result/progress decoded), or None."""
    rows = _query("SELECT * FROM runs WHERE id = ?", (run_id,))
    return _decode(rows[0]) if rows else None


def list_runs(kind: str | None = None, status: str | None = None, limit: int = 500) -> list[dict]:
    """Runs, newest first, as `get_run` dicts."""
    sql, args = "SELECT * FROM runs WHERE 1=1", []
    for col, val in (("kind", kind), ("status", status)):
        if val is not None:
            sql += f" AND {col} = ?"
            args.append(val)
    rows = _query(sql + " ORDER BY created DESC LIMIT ?", (*args, limit))
    return [_decode(r) for r in rows]


def done_runs_of_prompts(prompt_ids: list[str], kind: str | None = None) -> dict[str, dict]:
    """{prompt id: the newest finished run that saved it} for the given prompts
    (one indexed query; prompts no run saved, such as imported ones, are absent)."""
    ids = list(dict.fromkeys(i for i in prompt_ids if i))
    out: dict[str, dict] = {}
    for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        chunk = ids[start:start + 500]
        sql = f"SELECT * FROM runs WHERE status = 'done' AND prompt_id IN ({','.join('?' * len(chunk))})"
        args: list = list(chunk)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        for r in _query(sql + " ORDER BY created DESC", tuple(args)):
            out.setdefault(r["prompt_id"], _decode(r))
    return out


def run_record(run_id: str) -> Run | None:
    """`get_run` typed."""
    row = get_run(run_id)
    return Run.from_row(row) if row else None


def run_records(kind: str | None = None, status: str | None = None, limit: int = 500) -> list[Run]:
    """`list_runs` typed."""
    return [Run.from_row(r) for r in list_runs(kind, status, limit)]


def done_run_for_key(key: str) -> dict | None:
    """The newest finished run of this work's key (for resume and reuse), or None."""
    rows = _query("SELECT * FROM runs WHERE key=? AND status='done' ORDER BY updated DESC LIMIT 1", (key,))
    return _decode(rows[0]) if rows else None


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
