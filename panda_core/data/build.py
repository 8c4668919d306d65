"""`prepare()`: build the offline suite into tasks_dir() from the registry packages.

Tasks sharing an archive are built together, so each archive is fetched and
read once; the manifest records every task's files and checksums, so a second
call leaves current tasks alone and takes well under a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import PandaError
from . import files
from .base import task_sources
from .catalogue import OFFLINE, SOURCE_OF
from .examples import RECIPE, SEED, SPLITS
from .offline import Build, build_task, task_ok
from .sources import SOURCES, SourceUnavailable, read_records


def _check_names(names: list[str]) -> None:
    for n in names:
        if n not in OFFLINE:
            if any(s.handles(n) for s in task_sources() if s.name != "offline"):
                raise PandaError(f"task '{n}' is not part of the offline suite; prepare builds only: "
                                 f"{', '.join(OFFLINE)}")
            raise PandaError(f"unknown task '{n}'; offline tasks: {', '.join(OFFLINE)}")


def _build_one(name: str, build: Build) -> dict:
    """Build and store one task, record it in the manifest; returns its counts."""
    spec = OFFLINE[name]
    key = SOURCE_OF[name]
    source = SOURCES[key]
    t0 = time.perf_counter()
    splits, notes = build_task(name, build)
    for split in SPLITS:
        if not splits[split]:
            raise ValueError(f"the {split} split came out empty")
    rec = read_records().get(key, {})
    meta = {"name": name, "family": spec.family, "labels": list(spec.labels), "source": "offline",
            "package": source.package, "version": source.version, "archive": rec.get("file"),
            "archive_sha256": rec.get("sha256", source.sha256), "license": spec.license,
            "citation": spec.citation, "description": spec.description, "pair": spec.pair,
            "recipe": RECIPE, "seed": SEED, **notes}
    stored = files.store(name, splits, meta)
    manifest = files.manifest()
    manifest["tasks"][name] = {
        "family": spec.family, "package": source.package, "source_version": source.version,
        "archive": rec.get("file"), "archive_sha256": meta["archive_sha256"], "license": spec.license,
        "citation": spec.citation, "recipe": RECIPE, **stored,
        "build_seconds": round(time.perf_counter() - t0, 2)}
    manifest["unavailable"].pop(name, None)
    files.save_manifest(manifest)
    return stored


def prepare(tasks: list[str] | None = None, progress: Callable[[str, float], None] | None = None) -> list[dict]:
    """Build the offline suite into tasks_dir() from the registry packages.

    Idempotent: a task whose files match the manifest is left alone, so a second
    call takes well under a second. A source that cannot be fetched marks its
    tasks unavailable (with the reason) and the other tasks still build."""
    names = list(OFFLINE) if not tasks else list(dict.fromkeys(tasks))
    _check_names(names)
    say = progress or (lambda stage, fraction: None)
    build = Build()
    failed_sources: dict[str, str] = {}
    results = []
    # tasks sharing an archive are built together, so each archive is read once
    order = sorted(names, key=lambda n: (list(SOURCES).index(SOURCE_OF[n]), list(OFFLINE).index(n)))
    with files.lock():
        for i, name in enumerate(order):
            spec = OFFLINE[name]
            key = SOURCE_OF[name]
            entry = files.manifest()["tasks"].get(name)
            if task_ok(name, entry):
                say(f"{name}: up to date", (i + 1) / len(order))
                results.append({"name": name, "family": spec.family, "n_train": entry["n_train"],
                                "n_dev": entry["n_dev"], "n_test": entry["n_test"]})
                continue
            say(f"{name}: building from {SOURCES[key].spec}", i / len(order))
            try:
                if key in failed_sources:
                    raise SourceUnavailable(failed_sources[key])
                stored = _build_one(name, build)
                results.append({"name": name, "family": spec.family, **{k: stored[k] for k in
                                                                        ("n_train", "n_dev", "n_test")}})
                say(f"{name}: {stored['n_train']}/{stored['n_dev']}/{stored['n_test']}", (i + 1) / len(order))
            except Exception as exc:  # one bad source must not stop the others
                reason = files.one_line(exc)
                if isinstance(exc, SourceUnavailable):
                    failed_sources[key] = reason
                manifest = files.manifest()
                manifest["tasks"].pop(name, None)
                manifest["unavailable"][name] = reason
                files.save_manifest(manifest)
                results.append({"name": name, "family": spec.family, "n_train": 0, "n_dev": 0, "n_test": 0,
                                "error": reason})
                say(f"{name}: unavailable ({reason})", (i + 1) / len(order))
    rank = {n: i for i, n in enumerate(names)}
    return sorted(results, key=lambda r: rank[r["name"]])


__all__ = ["prepare"]
