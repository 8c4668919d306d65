"""Helpers for the reliability suites (test_reliability, test_fuzz_prompt_files, test_fuzz_task_files,
test_concurrency), and the child process they start and kill.

As a script (`python tests/reliability_helpers.py store-loop ...`) it is a
writer that saves prompts, records runs and adds user tasks in a loop against
$PANDA_CACHE, printing one `ACK kind id` line (flushed) after each piece of
work is committed; the parent kills it at random moments or lets it finish,
then checks that every acknowledged piece of work is intact.

Counts for docs/reliability.md are appended to $PANDA_RELIABILITY_STATS
(a JSON-lines file) when that variable is set; `scripts/reliability_report.py`
sets it, runs the suites and renders the document.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# problems doctor may report right after a kill: interrupted work, never lost or corrupt work
ALLOWED_AFTER_KILL = ("orphan prompt file", "half-written file", "its process is gone", "orphan task folder",
                      "orphan sidecar", "orphan projector")


def record(section: str, **counts) -> None:
    """Append counts to the stats file when the report script asked for them."""
    target = os.environ.get("PANDA_RELIABILITY_STATS")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"section": section, "time": time.time(), **counts}) + "\n")


def snapshot(cache: Path) -> dict:
    """Every file under the cache (symlinked shared data not followed) with its
    checksum, plus every database row: equal snapshots mean nothing changed."""
    files = {}
    for root, dirs, names in os.walk(cache, followlinks=False):
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for n in names:
            p = Path(root) / n
            if p.is_symlink() or n.startswith("runs.sqlite"):
                continue
            files[str(p.relative_to(cache))] = hashlib.sha256(p.read_bytes()).hexdigest()
    rows = {}
    db = cache / "runs.sqlite"
    if db.exists():
        conn = sqlite3.connect(db)
        try:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                rows[table] = sorted(map(repr, conn.execute(f"SELECT * FROM {table}").fetchall()))
        finally:
            conn.close()
    return {"files": files, "rows": rows}


def one_line_error(err: BaseException) -> None:
    text = str(err)
    assert text and "\n" not in text and "\r" not in text, repr(text)
    assert "Traceback" not in text


def labelled_rows(n: int = 60, seed: int = 0) -> list[dict]:
    """Distinct, readable two-class rows (texts stay distinct after normalisation)."""
    rng = random.Random(seed)
    good = ["great", "lovely", "wonderful", "excellent", "superb", "fine"]
    bad = ["awful", "terrible", "horrible", "dreadful", "poor", "bad"]
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        word = rng.choice(good if pos else bad)
        rows.append({"text": f"item {i} {_words(i)} was {word}", "label": "pos" if pos else "neg"})
    return rows


def _words(i: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    out = ""
    i += 1
    while i:
        i, r = divmod(i, 26)
        out += alphabet[r]
    return out


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def child_env(cache: Path) -> dict:
    env = dict(os.environ)
    env["PANDA_CACHE"] = str(cache)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def child_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# ------------------------------------------------------------------ the child
def store_loop(tag: str, seed: int, count: int | None, hidden: int, tasks_every: int,
               until: str | None = None) -> None:
    """Save prompts / record runs / add user tasks until killed, `count` done,
    or the file `until` exists."""
    import torch

    from panda_core import data as tasks
    from panda_core import store
    from panda_core.prompts import SoftPrompt

    rng = random.Random(seed)
    import pandas  # noqa: F401 - imported before READY, like torch, so kills land in the work

    folder = Path(os.environ["PANDA_CACHE"]) / f"child-{tag}"
    folder.mkdir(exist_ok=True)
    csv = write_csv(folder / "task.csv", labelled_rows(40, seed))
    print("READY", flush=True)
    i = 0
    while count is None or i < count:
        if until and Path(until).exists():
            break
        i += 1
        if tasks_every and i % tasks_every == 1:  # the first piece of work is a user task
            name = f"u_{tag}_{i}"
            tasks.add_user_task(name, csv)
            print(f"ACK task {name}", flush=True)
            continue
        run_id = store.create_run("train", "pt", "mr", "minilm", {"child": tag, "i": i})
        store.add_curve_point(run_id, 0, rng.random())
        length = rng.choice([4, 20, 100])
        prompt = SoftPrompt(tensor=torch.randn(length, hidden), backbone="minilm", task="mr", seed=i,
                            extra={"run_id": run_id, "child": tag})
        pid = store.save_prompt(prompt)
        store.add_curve_point(run_id, 1, rng.random())
        store.update_run(run_id, status="done", result={"prompt_id": pid, "i": i}, prompt_id=pid)
        print(f"ACK run {run_id} {pid}", flush=True)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("store-loop")
    s.add_argument("--tag", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--count", type=int)
    s.add_argument("--hidden", type=int, default=384)
    s.add_argument("--tasks-every", type=int, default=5)
    s.add_argument("--until", help="stop when this file exists")
    args = p.parse_args(argv)
    if args.mode == "store-loop":
        store_loop(args.tag, args.seed, args.count, args.hidden, args.tasks_every, args.until)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main(sys.argv[1:]))


def fuzz_settings(n: int):
    """hypothesis settings for `n` examples, scaled by PANDA_FUZZ_SCALE (e.g. 10 for a longer hunt)."""
    from hypothesis import HealthCheck, settings

    scale = float(os.environ.get("PANDA_FUZZ_SCALE", "1"))
    return settings(max_examples=max(10, int(n * scale)), deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=False)


def json_values():
    """A hypothesis strategy of arbitrary JSON values (nested, hostile numbers and strings)."""
    from hypothesis import strategies as st

    return st.recursive(
        st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=30),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
        max_leaves=12,
    )
