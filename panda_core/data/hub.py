"""The hub origin: Hugging Face datasets for users who are online.

Loaded only when PANDA_ALLOW_HUB=1, never during tests or set-up. A hub split
of None in the catalogue is carved from train (seeded, stratified), and the
same caps as offline tasks apply. Splits are cached in-process.
"""

from __future__ import annotations

import os
import random

from ..errors import PandaError
from .base import TASK_SOURCES, CatalogueSource
from .catalogue import HUB
from .examples import CAPS, SEED, SPLITS, Example, TaskSpec
from .files import one_line
from .splits import stratified_take

HUB_REASON = "needs the Hugging Face hub; set PANDA_ALLOW_HUB=1 when online"

_CACHE: dict[tuple[str, str], list[Example]] = {}  # ("hub:<task>", split) -> examples


def hub_allowed() -> bool:
    return os.environ.get("PANDA_ALLOW_HUB", "") == "1"


def _fetch(h: dict, hub_split: str) -> list[Example]:
    """One split of a hub dataset as examples; rows without a gold label (-1) dropped."""
    try:
        from datasets import load_dataset
    except ImportError:  # pragma: no cover
        raise PandaError("the 'datasets' package is missing; run: pip install datasets") from None
    try:
        ds = load_dataset(h["path"], h.get("name"), split=hub_split)
    except Exception as exc:
        raise PandaError(f"could not load {h['path']}/{h.get('name') or ''} split {hub_split} from the hub: "
                         f"{one_line(exc)}") from None
    out = []
    for row in ds:
        label = int(row[h["label"]])
        if label < 0:  # unlabelled (SNLI without gold, GLUE test)
            continue
        tb = row[h["text_b"]] if h.get("text_b") else None
        out.append(Example(str(row[h["text_a"]]), label, str(tb) if tb is not None else None))
    return out


def load_hub(spec: TaskSpec, split: str) -> list[Example]:
    """A hub dataset split, only when the user allowed network access; same dev/caps rules as offline."""
    if not hub_allowed():
        raise PandaError(f"task '{spec.name}' {HUB_REASON}")
    ckey = (f"hub:{spec.name}", split)
    if ckey in _CACHE:
        return list(_CACHE[ckey])
    h = spec.hub or {}
    splits_map = h["splits"]
    rng = random.Random(SEED)
    train = _fetch(h, splits_map["train"])
    if splits_map.get("dev"):
        dev = _fetch(h, splits_map["dev"])
    else:
        pool = list(train)
        rng.shuffle(pool)
        dev, train = stratified_take(pool, min(CAPS["dev"], round(0.1 * len(pool))), rng)
    test = _fetch(h, splits_map["test"])
    result = {"train": train, "dev": dev, "test": test}
    for s in SPLITS:
        if len(result[s]) > CAPS[s]:
            result[s], _ = stratified_take(result[s], CAPS[s], random.Random(SEED))
        _CACHE[(f"hub:{spec.name}", s)] = result[s]
    return list(result[split])


@TASK_SOURCES.add
class HubSource(CatalogueSource):
    """GLUE and friends from the Hugging Face hub (catalogue `HUB`)."""

    name = "hub"
    label = "Hugging Face hub"
    rank = 1
    catalogue = HUB

    def status(self) -> list[dict]:
        allowed = hub_allowed()
        out = []
        for name, spec in HUB.items():
            row = {"name": name, "family": spec.family, "labels": list(spec.labels), "source": "hub",
                   "available": allowed, "n_train": None, "n_dev": None, "n_test": None, "license": spec.license}
            if not allowed:
                row["reason"] = HUB_REASON
            out.append(row)
        return out

    def load_split(self, spec: TaskSpec, split: str) -> list[Example]:
        return load_hub(spec, split)


__all__ = ["HUB_REASON", "hub_allowed", "load_hub", "HubSource"]
