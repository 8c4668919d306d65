"""The run registry's database: one SQLite file in WAL mode, its schema, the
in-place migrations, connections and write transactions.

Concurrent writers (app sessions, job workers, sweep processes, `doctor`)
share the file: every write is one `BEGIN IMMEDIATE` transaction and every
connection waits up to 30 s for the lock instead of failing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import PandaError

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
CREATE INDEX IF NOT EXISTS runs_by_prompt ON runs(prompt_id);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    split TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, split, step)
);
"""

_READY: set[str] = set()  # databases whose schema this process has checked
_RUN_COLUMNS = {"owner": "TEXT"}  # added after the first release: migrated in place
#: prompts-table columns added later (rows from before deep prompts are input-level prompts)
_PROMPT_COLUMNS = {"prompt_type": "TEXT NOT NULL DEFAULT 'input'"}


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the schema and add the columns newer versions need."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    for table, columns in (("runs", _RUN_COLUMNS), ("prompts", _PROMPT_COLUMNS)):
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}
        for col, kind in columns.items():
            if col not in have:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
                except sqlite3.OperationalError as err:  # another process added it first
                    if "duplicate column" not in str(err):
                        raise


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
            _migrate(conn)
            _READY.add(str(db))
    except sqlite3.DatabaseError as err:
        raise PandaError(
            f"the run registry {db.name} is unreadable ({str(err).splitlines()[0][:80]}); "
            "run `python -m panda_core doctor --fix` to move it aside and rebuild it from the prompt files"
        ) from None
    return conn


def forget(path: Path | None = None) -> None:
    """Forget that a database's schema was checked (after it was moved aside),
    so the next connection creates it again."""
    _READY.discard(str(Path(path or paths.db_path())))


@contextmanager
def transaction() -> Iterator[sqlite3.Connection]:
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
    """Rows of one read query, as plain dicts. A registry that does not exist
    yet has no rows: reading never creates it (a fresh cache stays empty)."""
    if not paths.db_path().exists():
        return []
    conn = connect()
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()
