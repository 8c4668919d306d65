"""Measured transfer from elsewhere ("external measurements"): a CSV of
``source,target,score`` from a paper (Su et al.'s zero-shot transfer of
their published RoBERTa prompts) or from other code, imported so that any
indicator can be validated against published numbers
(`validation.validate_indicators(..., measure="external:<name>")`).

The CSV has a header row. Required columns: ``source``, ``target``,
``score``; optional: ``backbone`` and ``metric`` (one value for the whole
file; the metric is a `validation.MEASURES` name such as ``zero-shot``,
relative performance), ``n`` (test items behind a score) and ``note``.
Everything is checked before anything is written (`parse_csv`, then
`import_measurement`), and each refusal is one line: the header, finite
numeric scores, at least one pair of two distinct tasks, no duplicate pair,
one backbone and one metric, a size limit, and every task must have a prompt
stored on that backbone (the refusal names the missing ones).

Why files and not rows in the run registry: an external measurement is not a
run of this machine and has no per-item results, so it must never mix with
the runs `validation.measurement` reads. Each is one JSON file,
``cache/measurements/<name>.json``, written atomically; listing is reading
that folder.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..errors import PandaError
from .external_csv import MAX_CSV_BYTES, measure_name, parse_csv

PREFIX = "external:"
FOLDER = "measurements"
MAX_FILE_BYTES = 8 * 1024 * 1024  # a stored measurement (JSON) read back
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass
class ExternalMeasurement:
    """One imported measurement: (source, target) -> score on `backbone`, of
    `measure` (a `MEASURES` name), with where it came from. `prompt_length` /
    `prompt_type` are those of the stored prompts that covered its tasks when
    it was imported (what validation compares against by default)."""

    name: str
    backbone: str
    measure: str
    pairs: list[dict[str, Any]]
    tasks: list[str]
    prompt_length: int | None = None
    prompt_type: str = "input"
    source_file: str = ""
    sha256: str = ""
    imported: float = field(default_factory=time.time)
    version: int = 1

    def value(self, source: str, target: str) -> float | None:
        return next((p["score"] for p in self.pairs if p["source"] == source and p["target"] == target), None)

    def matrix(self, tasks: Sequence[str]) -> np.ndarray:
        """(sources, targets) over `tasks`; NaN where the CSV has no number."""
        at = {t: i for i, t in enumerate(tasks)}
        out = np.full((len(tasks), len(tasks)), np.nan)
        for p in self.pairs:
            if p["source"] in at and p["target"] in at:
                out[at[p["source"]], at[p["target"]]] = p["score"]
        return out

    def summary(self) -> dict[str, Any]:
        """What `list_measurements` and the app show (no pairs)."""
        return {"name": self.name, "measure_id": PREFIX + self.name, "backbone": self.backbone,
                "measure": self.measure, "tasks": self.tasks, "pairs": len(self.pairs),
                "prompt_length": self.prompt_length, "prompt_type": self.prompt_type,
                "source_file": self.source_file, "imported": self.imported, "sha256": self.sha256}


def external_name(measure: object) -> str | None:
    """The measurement name in ``"external:<name>"``, or None for a run-based measure."""
    if isinstance(measure, str) and measure.startswith(PREFIX):
        return measure[len(PREFIX):]
    return None


def _backbone(from_file: str | None, given: str | None, where: str) -> str:
    from ..backbones.foreign import foreign_id, installed
    from ..backbones.spec import REGISTRY, TINY_MLM

    def norm(name: str) -> str:
        return name.lower() if name.lower() in REGISTRY or name.lower() == TINY_MLM else name

    chosen = norm(given.strip()) if given and given.strip() else None
    named = norm(from_file) if from_file else None
    if chosen and named and chosen != named:
        raise PandaError(f"{where}: its backbone column says '{named[:60]}' but --backbone is '{chosen[:60]}'; "
                         "fix one of them")
    name = chosen or named
    if not name:
        raise PandaError(f"{where} does not say which backbone its numbers are of; pass --backbone (or add a "
                         "backbone column)")
    return name if installed(name) else foreign_id(name, where)


def _covering(backbone: str, tasks: list[str], where: str) -> tuple[int | None, str]:
    """The (length, prompt type) of stored task prompts that covers the most of
    `tasks` (input and 20 tokens first); refuses tasks with no prompt at all."""
    from .. import store

    rows = store.list_prompts(backbone=backbone, method="pt") if paths.db_path().exists() else []
    have = {r["task"] for r in rows}
    missing = [t for t in tasks if t not in have]
    if missing:
        raise PandaError(f"{where}: no prompts on '{backbone}' for {len(missing)} of its tasks "
                         f"({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}); import or train their "
                         f"prompts first (python -m panda_core prompts import DIR --backbone {backbone})")
    cover: dict[tuple[int, str], set[str]] = {}
    for r in rows:
        if r["task"] in tasks:
            cover.setdefault((r["length"], r["prompt_type"] or "input"), set()).add(r["task"])
    length, kind = max(cover, key=lambda k: (len(cover[k]), k[1] == "input", k[0] == 20, -k[0]))
    return length, kind


def measurements_dir() -> Path:
    """Where external measurements live (not created by reading)."""
    return paths.cache_dir() / FOLDER


def _path(name: str) -> Path:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PandaError(f"measurement name {str(name)[:40]!r} is not a name: use letters, digits, '_', '-', '.' "
                         "(at most 64, e.g. su2022)")
    return measurements_dir() / f"{name}.json"


def import_measurement(path: str | Path | None = None, name: str | None = None, backbone: str | None = None,
                       measure: str | None = None, *, data: bytes | None = None, where: str | None = None,
                       replace: bool = False) -> dict[str, Any]:
    """Import a measured-transfer CSV (a file at `path`, or uploaded bytes
    `data` called `where`) as external measurement `name`; returns its
    `summary()`. Everything is checked first; then one JSON file is written
    atomically. An existing name is refused unless `replace`."""
    import hashlib

    from .. import atomic

    if data is None:
        if path is None:
            raise PandaError("give a CSV file of source,target,score to import")
        file = Path(path)
        where = where or file.name
        if not file.is_file():
            raise PandaError(f"file not found: {file}; give a CSV of source,target,score")
        if file.stat().st_size > MAX_CSV_BYTES:
            raise PandaError(f"{where} is {file.stat().st_size / 2**20:.1f} MB, over the {MAX_CSV_BYTES >> 20} MB "
                             "limit for a measured-transfer CSV")
        data = file.read_bytes()
    where = where or "the CSV"
    name = name or Path(where).stem
    target = _path(name)
    if target.exists() and not replace:
        raise PandaError(f"an external measurement '{name}' exists already; choose another --name or pass --replace")
    parsed = parse_csv(data, where)
    bb = _backbone(parsed["backbone"], backbone, where)
    named = measure_name(parsed["metric"], where) if parsed["metric"] else None
    chosen = measure_name(measure, "--measure") if measure else None
    if named and chosen and named != chosen:
        raise PandaError(f"{where}: its metric column says '{named}' but --measure is '{chosen}'; fix one of them")
    length, kind = _covering(bb, parsed["tasks"], where)
    found = ExternalMeasurement(name, bb, chosen or named or "zero-shot", parsed["pairs"], parsed["tasks"], length,
                                kind, Path(where).name[:200], hashlib.sha256(data).hexdigest())
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(target, asdict(found))
    return found.summary()


def _damaged(name: str, why: str) -> PandaError:
    return PandaError(f"external measurement '{name}' is damaged ({why}); import its CSV again with --replace")


def load_measurement(name: str) -> ExternalMeasurement:
    """A stored external measurement, its file checked (one-line PandaError)."""
    path = _path(name)
    if not path.is_file():
        known = ", ".join(m["name"] for m in list_measurements()) or "none yet"
        raise PandaError(f"no external measurement '{name}' (imported: {known}); import one with "
                         "python -m panda_core measurements import FILE --name NAME")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError("too large")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise _damaged(name, str(err)[:60]) from None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("pairs"), list) or not raw["pairs"]:
        raise _damaged(name, "no pairs")
    pairs = []
    for p in raw["pairs"]:
        ok = isinstance(p, Mapping) and all(isinstance(p.get(k), str) for k in ("source", "target")) \
            and isinstance(p.get("score"), int | float) and not isinstance(p.get("score"), bool) \
            and math.isfinite(p["score"])
        if not ok:
            raise _damaged(name, "a pair is not source, target and a finite score")
        pairs.append(dict(p))
    try:
        fields = {k: raw[k] for k in ("backbone", "measure")} | {
            k: raw[k] for k in ("prompt_length", "prompt_type", "source_file", "sha256", "imported") if k in raw}
        found = ExternalMeasurement(name=name, pairs=pairs, tasks=sorted({p[k] for p in pairs for k in
                                                                           ("source", "target")}), **fields)
    except (KeyError, TypeError):
        raise _damaged(name, "fields missing") from None
    if not isinstance(found.backbone, str) or not isinstance(found.measure, str):
        raise _damaged(name, "backbone or measure is not text")
    return found


def list_measurements(backbone: str | None = None) -> list[dict[str, Any]]:
    """Summaries of the stored external measurements (of `backbone` when given),
    by name; a damaged file is listed with its "error"."""
    folder = measurements_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if not _NAME_RE.match(path.stem):
            continue
        try:
            row = load_measurement(path.stem).summary()
        except PandaError as err:
            row = {"name": path.stem, "measure_id": PREFIX + path.stem, "backbone": None, "error": str(err)}
        if backbone is None or row["backbone"] == backbone:
            out.append(row)
    return out


def label(measure: str) -> str:
    """How pages name a measure: run-based ones by their label, external ones as imported numbers."""
    name = external_name(measure)
    if name is None:
        from .validation import MEASURES

        return f"{measure}: {MEASURES.get(measure).label}"
    try:
        found = load_measurement(name)
    except PandaError:
        return f"external: {name} (imported CSV, unreadable)"
    return f"external: {name} (imported CSV, {found.measure}, {len(found.pairs)} pairs)"


def validate_external(name: str, backbone: str, tasks: Sequence[str] | None, metrics: Sequence[str],
                      prompt_length: int | None = None, n_inputs: int = 32,
                      prompt_type: str | None = None) -> dict[str, Any]:
    """`validation.validate_indicators` against external measurement `name`:
    the same Spearman / Kendall with intervals, NDCG@3 and top-beats-median
    (`correlation.correlate`), over its tasks that have a stored prompt of
    `prompt_length` tokens (default: the length recorded at import). The result
    says ``"external": True`` and ``"source": name``; there is no configuration
    of runs and no reference ("config" None)."""
    from .. import store
    from .correlation import correlate, rounded
    from .similarity import task_prompts

    found = load_measurement(name)
    if found.backbone != backbone:
        raise PandaError(f"external measurement '{name}' gives transfer on '{found.backbone}', not '{backbone}'; "
                         f"choose backbone {found.backbone}")
    length = prompt_length if prompt_length is not None else (found.prompt_length or 20)
    kind = prompt_type or found.prompt_type or "input"
    wanted = [t for t in (tasks if tasks is not None else found.tasks) if t in found.tasks]
    have = store.latest_prompts(backbone, "pt", length, wanted, kind)
    usable = [t for t in wanted if t in have]
    if len(usable) < 3:
        raise PandaError(f"external measurement '{name}' covers {len(usable)} task(s) with a {length}-token {kind} "
                         f"prompt on '{backbone}' ({', '.join(usable) or 'none'}); validation needs 3 (its tasks: "
                         f"{', '.join(found.tasks[:8])})")
    order = [p.task for p in task_prompts(backbone, usable, length, kind)]
    measured = found.matrix(order)
    if np.isnan(measured[~np.eye(len(order), dtype=bool)]).all():
        raise PandaError(f"external measurement '{name}' has no pair of two distinct tasks among "
                         f"{', '.join(order)}; choose tasks it measured")
    out, best = correlate(metrics, backbone, order, length, measured, n_inputs, kind)
    return {"tasks": order, "measure": PREFIX + name, "backbone": backbone, "prompt_type": kind,
            "prompt_length": length, "config": None, "measured": rounded(measured), "missing_references": [],
            "indicators": out, "best": best, "external": True, "source": name, "external_measure": found.measure,
            "source_file": found.source_file, "left_out": [t for t in found.tasks if t not in order]}
