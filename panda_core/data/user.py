"""The user origin: a labelled CSV/TSV/JSONL/parquet file registered as a task
with `add_user_task()` (seeded 80/10/10 split, same caps as offline tasks),
recorded in tasks_dir()/user_tasks.json.

Every problem is a one-line `PandaError`, raised before anything is written:
bad arguments, unreadable files (see `tables`), missing columns, duplicated ids,
too many labels, and splits too small to train or evaluate on
(`splits.check_sizes`, thresholds in `splits.SIZE_RULES`). Small but usable
splits are accepted with `warnings` in the result.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import PandaError
from . import files
from .base import TASK_SOURCES, task_sources
from .examples import SEED, Example, TaskSpec
from .readers import clean
from .sources import sha256_file
from .splits import check_sizes, make_splits
from .tables import (
    USER_MAX_BYTES,
    USER_MAX_ROWS,
    is_missing,
    label_value,
    read_table,
    show,
    text_value,
    verbalizer,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
USER_MAX_LABELS = 200
ID_COLUMNS = ("id", "idx", "guid", "uid", "example_id")
_ADD_HINT = "python -m panda_core tasks add"

Row = tuple[str, Any, str | None]  # (text_a, label as read, text_b)


def _check_args(name: Any, text_col: Any, label_col: Any, text_b_col: Any, family: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PandaError(f"task name {show(repr(name))} is invalid; use 2-40 characters: a lower-case letter, "
                         "then a-z, 0-9 or _")
    if any(s.handles(name) for s in task_sources() if s.name != "user"):
        raise PandaError(f"task name '{name}' is a built-in task; choose another name")
    if family is not None and (not isinstance(family, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", family)):
        raise PandaError(f"family {show(repr(family))} is invalid; use a short lower-case word like 'user'")
    for col, flag in ((text_col, "--text-col"), (label_col, "--label-col")):
        if not isinstance(col, str) or not col.strip():
            raise PandaError(f"{flag} must name a column of the file")
    if text_b_col is not None and not isinstance(text_b_col, str):
        raise PandaError("--text-b-col must name a column of the file")
    if len({text_col, label_col, text_b_col} - {None}) < 2 + bool(text_b_col):
        raise PandaError(f"the text and label columns must be different columns (got text '{show(text_col)}', "
                         f"label '{show(label_col)}'{', text_b ' + repr(show(text_b_col)) if text_b_col else ''})")


def _open_table(file: Any) -> tuple[Path, Any]:
    """The file's path and its table, after the size checks."""
    try:
        path = Path(file).expanduser()
        found = path.is_file()
    except (TypeError, ValueError, OSError):
        raise PandaError(f"{show(repr(file), 80)} is not a usable file path; give the path of a CSV, JSONL or "
                         "parquet file") from None
    if not found:
        raise PandaError(f"file not found: {show(path, 200)}; give the path of a CSV, JSONL or parquet file")
    fname = show(path.name)
    size = path.stat().st_size
    if size == 0:
        raise PandaError(f"{fname} is empty; give a file with a header row and examples")
    if size > USER_MAX_BYTES:
        raise PandaError(f"{fname} is {size / 2**20:.0f} MB; the limit is {USER_MAX_BYTES // 2**20} MB, "
                         "so sample it down first")
    df = read_table(path)
    if len(df) > USER_MAX_ROWS:
        raise PandaError(f"{fname} has more than {USER_MAX_ROWS} rows; sample it down first")
    if len(df.columns) == 0 or len(df) == 0:
        raise PandaError(f"{fname} has no examples; give a file with a header row and examples")
    return path, df


def _rows(df: Any, fname: str, text_col: str, label_col: str, text_b_col: str | None) -> tuple[list[Row], int]:
    """The usable rows and how many were skipped for a missing cell; checks columns and ids."""
    columns = [str(c) for c in df.columns]
    for col, flag in ((text_col, "--text-col"), (label_col, "--label-col"), (text_b_col, "--text-b-col")):
        if col is not None and col not in columns:
            shown = ", ".join(show(c, 30) for c in columns[:20]) + (", ..." if len(columns) > 20 else "")
            raise PandaError(f"column '{show(col)}' not found in {fname}; columns found: {shown} "
                             f"(choose one with {flag})")
    id_col = next((c for c in columns if c.lower() in ID_COLUMNS and c not in (text_col, label_col, text_b_col)),
                  None)
    if id_col is not None:
        counts = Counter(text_value(v) for v in df[id_col].tolist() if not is_missing(v))
        dup, times = counts.most_common(1)[0] if counts else (None, 1)
        if times > 1:
            raise PandaError(f"{fname}: id '{show(dup)}' in column '{show(id_col)}' appears {times} times "
                             "(duplicated rows?); remove the duplicates or rename the column")
    texts_b = df[text_b_col].tolist() if text_b_col else [None] * len(df)
    rows: list[Row] = []
    skipped = 0
    for ta, lab, tb in zip(df[text_col].tolist(), df[label_col].tolist(), texts_b, strict=True):
        if is_missing(ta) or is_missing(lab) or (text_b_col and is_missing(tb)):
            skipped += 1
            continue
        rows.append((clean(text_value(ta)), label_value(lab), clean(text_value(tb)) if text_b_col else None))
    rows = [r for r in rows if r[0] and r[1] != "" and (not text_b_col or r[2])]
    if not rows:
        raise PandaError(f"{fname} has no rows with both '{show(text_col)}' and '{show(label_col)}' filled in")
    if all(isinstance(r[1], str) for r in rows) and all(re.fullmatch(r"-?\d{1,18}", r[1]) for r in rows):
        rows = [(ta, int(lab), tb) for ta, lab, tb in rows]  # CSV ids arrive as text
    return rows, skipped


def _label_map(values: set, label_names: Any, fname: str, label_col: str) -> tuple[list[str], dict]:
    """The label names in id order and the map from a label as read to its id."""
    if len(values) > USER_MAX_LABELS:
        raise PandaError(f"column '{show(label_col)}' of {fname} has {len(values)} different values; a task has at "
                         f"most {USER_MAX_LABELS} labels (is it a text column? choose the label column with --label-col)")
    if not label_names:
        if all(isinstance(v, int) for v in values):
            ordered = sorted(values)  # 0..k-1 keep their ids; e.g. -1/1 or 1..5 map to ranks
            return [str(v) for v in ordered], {v: i for i, v in enumerate(ordered)}
        ordered = sorted({str(v) for v in values})
        return ordered, {v: ordered.index(str(v)) for v in values}
    if not isinstance(label_names, (list, tuple)):
        raise PandaError("label names must be a list of names in id order")
    names = [text_value(n) for n in label_names]
    if len(set(names)) != len(names) or not all(names):
        raise PandaError("label names must be distinct and non-empty")
    if len(names) > USER_MAX_LABELS:
        raise PandaError(f"{len(names)} label names given; a task has at most {USER_MAX_LABELS}")
    if all(isinstance(v, int) for v in values):
        bad = sorted(v for v in values if not 0 <= v < len(names))
        if bad:
            raise PandaError(f"label ids {show(bad[:5], 60)} are out of range for {len(names)} label names; "
                             f"use ids 0..{len(names) - 1}")
        return names, {v: v for v in values}
    index = {n: i for i, n in enumerate(names)}
    bad = sorted(str(v) for v in values if str(v) not in index)
    if bad:
        raise PandaError(f"unknown label names in {fname}: {', '.join(show(b, 20) for b in bad[:5])}; "
                         f"expected one of: {', '.join(show(n, 20) for n in names[:10])}")
    return names, {v: index[str(v)] for v in values}


def add_user_task(name: str, file: str | Path, text_col: str = "text", label_col: str = "label",
                  text_b_col: str | None = None, label_names: list[str] | None = None,
                  family: str = "user") -> dict:
    """Register a labelled file as a task (seeded 80/10/10 split, same caps as offline tasks).

    Labels may be strings (ids follow sorted names, or the order of
    `label_names`) or integer ids. Every problem is a one-line PandaError, and
    nothing is written to the cache unless every check passes. Returns the
    task's name, split sizes, labels and `warnings` (small splits)."""
    _check_args(name, text_col, label_col, text_b_col, family)
    path, df = _open_table(file)
    fname = show(path.name)
    rows, skipped = _rows(df, fname, text_col, label_col, text_b_col)
    names, to_id = _label_map({r[1] for r in rows}, label_names, fname, label_col)
    examples = [Example(ta, to_id[lab], tb) for ta, lab, tb in rows]
    present = {e.label for e in examples}
    if len(present) < 2:
        raise PandaError(f"{fname} has only one class ({show(names[next(iter(present))])}); "
                         "a task needs at least two")
    splits, notes = make_splits(examples, fractions=(0.1, 0.1))
    warnings = check_sizes(fname, splits, [show(n, 20) for n in names], notes)
    verbal = [verbalizer(n) for n in names]
    if len(set(verbal)) != len(verbal):
        verbal = list(names)
    spec = {"name": name, "family": family or "user", "labels": names,
            "descriptions": [f"{n.replace('_', ' ')}." for n in names], "verbalizers": verbal,
            "license": "user data", "citation": "", "description": f"User task from {show(path.name, 120)}",
            "pair": bool(text_b_col)}
    meta = {**spec, "source": "user", "file": show(path.name, 120), "file_sha256": sha256_file(path),
            "columns": {"text_a": text_value(text_col), "text_b": text_value(text_b_col) if text_b_col else None,
                        "label": text_value(label_col)},
            "rows_skipped_missing": skipped, "seed": SEED, **notes}
    with files.lock("user"):
        stored = files.store(name, splits, meta)
        registry = files.user_registry()
        registry[name] = {"spec": spec, **stored}
        files.save_user_registry(registry)
    return {"name": name, "n_train": stored["n_train"], "n_dev": stored["n_dev"], "n_test": stored["n_test"],
            "labels": names, "warnings": warnings}


def _spec(entry: dict) -> TaskSpec:
    s = entry["spec"]
    return TaskSpec(s["name"], s["family"], tuple(s["labels"]), tuple(s["descriptions"]), tuple(s["verbalizers"]),
                    "user", s.get("license", "user data"), s.get("citation", ""), s.get("description", ""),
                    bool(s.get("pair", False)), None)


@TASK_SOURCES.add
class UserSource:
    """Tasks added from the user's files (user_tasks.json)."""

    name = "user"
    label = "user files"
    rank = 2

    def handles(self, task: str) -> bool:
        return task in files.user_registry()

    def spec(self, task: str) -> TaskSpec:
        entry = files.user_registry().get(task)
        if entry is None:
            raise PandaError(f"unknown task '{task}'; add it with: {_ADD_HINT}")
        return _spec(entry)

    def names(self) -> list[str]:
        return sorted(files.user_registry())

    def status(self) -> list[dict]:
        out = []
        for name, entry in sorted(files.user_registry().items()):
            spec = entry["spec"]
            ok = files.has_split_files(name)
            row = {"name": name, "family": spec["family"], "labels": list(spec["labels"]), "source": "user",
                   "available": ok, "n_train": entry.get("n_train"), "n_dev": entry.get("n_dev"),
                   "n_test": entry.get("n_test"), "license": spec.get("license", "user data")}
            if not ok:
                row["reason"] = f"files of user task '{name}' are missing; add it again with: {_ADD_HINT}"
            out.append(row)
        return out

    def load_split(self, spec: TaskSpec, split: str) -> list[Example]:
        examples = files.read_split(spec.name, split)
        if examples is None:
            raise PandaError(f"user task '{spec.name}' has no {split} file; add it again with: {_ADD_HINT}")
        return examples


__all__ = ["NAME_RE", "USER_MAX_LABELS", "ID_COLUMNS", "add_user_task", "UserSource"]
