"""`doctor`: check the cache. Database integrity, every registered prompt's
file and checksum, orphan and half-written files, runs whose worker died."""

from __future__ import annotations

from . import paths, store


def check(fix: bool = False) -> dict:
    """Returns {"ok", "problems": [...], "checked": {...}}; with fix=True,
    half-written temporaries and orphan files are removed and dead runs marked failed."""
    problems: list[str] = []
    conn = store.connect()
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = [dict(r) for r in conn.execute("SELECT id, sha256 FROM prompts").fetchall()]
    finally:
        conn.close()
    if integrity != "ok":
        problems.append(f"database integrity: {integrity}")
    known = set()
    for row in rows:
        path = store.prompt_path(row["id"])
        known.add(path.name)
        if not path.exists():
            problems.append(f"prompt {row['id']}: file missing")
        elif store.sha256_file(path) != row["sha256"]:
            problems.append(f"prompt {row['id']}: checksum mismatch")
    folder = paths.prompts_dir()
    for f in sorted(folder.iterdir()):
        if f.name.endswith(".tmp"):
            problems.append(f"half-written file {f.name}")
            if fix:
                f.unlink(missing_ok=True)
        elif f.suffix == ".safetensors" and f.name not in known:
            problems.append(f"orphan prompt file {f.name} (no database row)")
            if fix:
                f.unlink(missing_ok=True)
                f.with_suffix(".json").unlink(missing_ok=True)
    from .jobs import reap

    if fix:
        for run_id in reap():
            problems.append(f"run {run_id}: worker died; marked failed")
    else:
        from .jobs import ACTIVE, _alive

        for run in store.list_runs(limit=5000):
            if run["status"] in ACTIVE and run.get("pid") and not _alive(run["pid"]):
                problems.append(f"run {run['id']}: status {run['status']} but its worker is gone")
    return {"ok": not problems, "problems": problems,
            "checked": {"prompts": len(rows), "database": integrity}}
