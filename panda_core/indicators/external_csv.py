"""Reading a measured-transfer CSV (`external`): ``source,target,score``
with optional ``backbone``, ``metric``, ``n`` and ``note`` columns. Every row
is checked before anything is stored, and every refusal is one line naming
the row, because these files come from papers and spreadsheets: a header
missing, a score of "n/a", a pair given twice, two backbones in one file.
Task names are normalised as the store names tasks (``SST-2`` -> ``sst_2``
is refused later unless a prompt of that task exists; ``agnews`` ->
``ag_news`` as in Prompt-Transferability)."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from ..errors import PandaError

MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ROWS = 20_000
REQUIRED = ("source", "target", "score")
OPTIONAL = ("backbone", "metric", "n", "note")
_TASK_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,99}$")


def task_name(text: str) -> str:
    """A CSV's task name as the store names tasks: lower case, '-' and spaces
    as '_', Prompt-Transferability's spellings mapped (``agnews`` -> ``ag_news``)."""
    from ..prompts.bundles import THUNLP_TASKS

    name = re.sub(r"[\s\-]+", "_", text.strip().lower())
    return THUNLP_TASKS.get(name, name)


def measure_name(text: str, where: str) -> str:
    from .validation import MEASURES

    name = text.strip().lower().replace("_", "-").replace(" ", "-")
    if name not in MEASURES.names():
        raise PandaError(f"{where}: metric '{text[:40]}' is not a measure here; use one of "
                         f"{', '.join(MEASURES.names())} (zero-shot: relative performance, Su et al.)")
    return name


def _one_value(values: set[str], column: str, where: str) -> str | None:
    values = {v for v in values if v}
    if len(values) > 1:
        raise PandaError(f"{where}: column '{column}' has {len(values)} different values "
                         f"({', '.join(sorted(values)[:3])}); one file holds one {column}: split it")
    return values.pop() if values else None


def _header(row: list[str], where: str) -> list[str]:
    cols = [c.strip().lower() for c in row]
    if not set(REQUIRED) <= set(cols):
        try:
            float(row[-1])
            first = " (the first row looks like data)"
        except (ValueError, IndexError):
            first = ""
        raise PandaError(f"{where}: the first row must be the header source,target,score[,backbone,metric,n,note]; "
                         f"found {','.join(c[:20] for c in cols[:6])}{first}")
    unknown = [c for c in cols if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise PandaError(f"{where}: unknown column '{unknown[0][:30]}'; the columns are source, target, score and "
                         f"optionally {', '.join(OPTIONAL)}")
    if len(set(cols)) != len(cols):
        raise PandaError(f"{where}: a column is named twice in the header")
    return cols


def _score(text: str, where: str, line: int) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise PandaError(f"{where}: row {line}: score '{text.strip()[:30]}' is not a number") from None
    if not math.isfinite(value):
        raise PandaError(f"{where}: row {line}: score '{text.strip()[:30]}' is not a finite number")
    return value


def _row(values: dict[str, str], where: str, line: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("source", "target"):
        raw = values[key]
        name = task_name(raw)
        if not _TASK_RE.match(name):
            raise PandaError(f"{where}: row {line}: {key} '{raw.strip()[:40]}' is not a task name")
        out[key] = name
    out["score"] = _score(values["score"], where, line)
    n = values.get("n", "").strip()
    if n:
        if not n.isdigit() or int(n) < 1 or int(n) > 10**9:
            raise PandaError(f"{where}: row {line}: n '{n[:20]}' is not a count of test items")
        out["n"] = int(n)
    note = values.get("note", "").strip()
    if note:
        out["note"] = "".join(ch for ch in note if ch.isprintable())[:200]
    return out


def parse_csv(data: bytes, where: str = "the CSV") -> dict[str, Any]:
    """{"pairs", "tasks", "backbone", "metric"} of a measured-transfer CSV, every
    row checked (one-line PandaError naming the row); nothing is written."""
    if len(data) > MAX_CSV_BYTES:
        raise PandaError(f"{where} is {len(data) / 2**20:.1f} MB, over the {MAX_CSV_BYTES >> 20} MB limit for a "
                         "measured-transfer CSV")
    if b"\x00" in data:
        raise PandaError(f"{where} is not a text file (it holds NUL bytes); give a CSV of source,target,score")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PandaError(f"{where} is not UTF-8 text; save the CSV as UTF-8") from None
    try:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text), strict=True))
                if any(c.strip() for c in r)]
    except csv.Error as err:
        raise PandaError(f"{where} is not a readable CSV ({str(err)[:80]})") from None
    if not rows:
        raise PandaError(f"{where} is empty; give a header source,target,score and one row per pair")
    (_, head), body = rows[0], rows[1:]
    cols = _header(head, where)
    if not body:
        raise PandaError(f"{where} has a header but no rows; add one row per (source, target) pair")
    if len(body) > MAX_ROWS:
        raise PandaError(f"{where} has {len(body)} rows, over the {MAX_ROWS} a measurement may have")
    pairs: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    extra: dict[str, set[str]] = {"backbone": set(), "metric": set()}
    for line, row in body:
        if len(row) != len(cols):
            raise PandaError(f"{where}: row {line} has {len(row)} fields, the header has {len(cols)}")
        values = dict(zip(cols, row, strict=True))
        pair = _row(values, where, line)
        key = (pair["source"], pair["target"])
        if key in seen:
            raise PandaError(f"{where}: rows {seen[key]} and {line} both give {key[0]} -> {key[1]}; keep one")
        seen[key] = line
        pairs.append(pair)
        for col in extra:
            extra[col].add(values.get(col, "").strip())
    if all(p["source"] == p["target"] for p in pairs):
        raise PandaError(f"{where}: every row pairs a task with itself; a transfer needs distinct source and target")
    tasks = sorted({p[k] for p in pairs for k in ("source", "target")})
    return {"pairs": pairs, "tasks": tasks, "backbone": _one_value(extra["backbone"], "backbone", where),
            "metric": _one_value(extra["metric"], "metric", where)}
