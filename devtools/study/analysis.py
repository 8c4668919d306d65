"""The study's numbers from its runs: accuracies with intervals and paired
differences, all through `panda_core.stats` (nothing is estimated here).

A run record is {"arm", "target", "source" (None for per-target arms such as
PT), "seed", ...}; its per-item correctness is `items[record_id(...)]`. A
comparison "a - b" pairs each run of arm a with the run of arm b on the same
target, seed and (when b has one) source, on the same test items, and reports

- overall: the mean over cells with the hierarchical bootstrap interval
  (targets -> sources -> seeds -> items) and the exact sign-flip p over the
  (target, source) cells (`stats.hierarchical_bootstrap`);
- per target: the same within each target (a target with a single cell, such
  as an arm without sources against PT, takes its cell's McNemar p: the
  sign-flip test over one cell cannot give less than 1);
- per cell: the mean over its seeds, an interval from the bootstrap over its
  seeds and items, the exact McNemar p of its pooled items, and each seed's difference.

Pure: numpy/scipy only, no model, no store; the tests call it on synthetic runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from panda_core.stats import (
    accuracy_with_ci,
    common_prefix,
    decode_items,
    hierarchical_bootstrap,
    mcnemar_exact,
    paired_difference,
)

from .config import AA, DEEP_PREFIX, MAJORITY, MT, PANDA, PANDA_RANDOM, POT, PT, RANDOM, UNTRAINED

NO_SOURCE = "-"  # the source level of per-target arms in the hierarchical cells

#: (name, a, b): every paired comparison the page shows; the first is the primary statistic
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("panda_vs_pot", PANDA, POT),
    ("pot_vs_pt", POT, PT),
    ("panda_vs_pt", PANDA, PT),
    ("panda_random_vs_pot", PANDA_RANDOM, POT),
    ("aa", POT, AA),
    ("mt_vs_pt", MT, PT),
    ("pt_vs_untrained", PT, UNTRAINED),
    ("pt_vs_random", PT, RANDOM),
    ("pt_vs_majority", PT, MAJORITY),
    ("deep_pt_vs_pt", DEEP_PREFIX + PT, PT),
    ("deep_pot_vs_pot", DEEP_PREFIX + POT, POT),
    ("deep_panda_vs_panda", DEEP_PREFIX + PANDA, PANDA),
)
PRIMARY = COMPARISONS[0][0]
NEGATIVE = "panda_vs_pot_negative_sources"  # the primary on the cells of the negative-transfer sources


def record_id(arm: str, target: str, source: str | None, seed: int) -> str:
    """The key of a run's items: "pot/mr/bbc/0", "pt/mr/-/1"."""
    return f"{arm}/{target}/{source or NO_SOURCE}/{seed}"


def rid(rec: Mapping[str, Any]) -> str:
    return record_id(rec["arm"], rec["target"], rec.get("source"), rec["seed"])


def accuracy(correct: Any) -> dict[str, Any]:
    """{"acc", "low", "high", "n"}: an accuracy with its Wilson 95% interval."""
    a = accuracy_with_ci(correct)
    return {"acc": a["acc"], "low": a["ci"][0], "high": a["ci"][1], "n": a["n"]}


def paired(a: Any, b: Any) -> dict[str, Any]:
    """The paired difference mean(a) - mean(b) on the items both scored (a prefix of the split)."""
    x, y = common_prefix(np.asarray(a, dtype=bool), np.asarray(b, dtype=bool))
    return paired_difference(x, y).to_dict()


def _items(items: Mapping[str, str], rec: Mapping[str, Any]) -> np.ndarray | None:
    text = items.get(rid(rec))
    return decode_items(text) if text is not None else None


def _pairs(records: list[dict], items: Mapping[str, str], a: str, b: str) -> list[dict]:
    """Hierarchical cells {"target", "source", "seed", "a", "b"} of every a run with a matching b run."""
    index = {rid(r): r for r in records}
    out = []
    for r in records:
        if r["arm"] != a:
            continue
        match = index.get(record_id(b, r["target"], r.get("source"), r["seed"])) or \
            index.get(record_id(b, r["target"], None, r["seed"]))
        x, y = _items(items, r), (_items(items, match) if match else None)
        if x is None or y is None:
            continue
        x, y = common_prefix(x, y)
        out.append({"target": r["target"], "source": r.get("source") or NO_SOURCE, "seed": r["seed"], "a": x, "b": y})
    return out


def _hier(cells: list[dict]) -> dict[str, Any]:
    h = hierarchical_bootstrap(cells)
    return h.to_dict() | {"min_p": min(1.0, 2.0 ** (1 - h.n_cells))}  # the smallest p the sign-flip test can give


def compare(records: list[dict], items: Mapping[str, str], a: str, b: str) -> dict[str, Any] | None:
    """The paired comparison a - b (module docstring), or None when no pair of runs exists."""
    cells = _pairs(records, items, a, b)
    if not cells:
        return None
    by_target: dict[str, list[dict]] = {}
    by_cell: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        by_target.setdefault(c["target"], []).append(c)
        by_cell.setdefault((c["target"], c["source"]), []).append(c)
    per_cell = []
    for (t, s), cc in by_cell.items():
        h = hierarchical_bootstrap(cc)
        p = mcnemar_exact(np.concatenate([c["a"] for c in cc]), np.concatenate([c["b"] for c in cc]))
        per_cell.append({"target": t, "source": None if s == NO_SOURCE else s, "diff": round(h.diff, 4),
                         "low": round(h.low, 4), "high": round(h.high, 4), "p_value": round(p, 4), "n": h.n_items,
                         "within_noise": h.within_noise,
                         "seeds": [{"seed": c["seed"], "diff": round(float(c["a"].mean() - c["b"].mean()), 4)}
                                   for c in cc]})
    one_cell_p = {c["target"]: c["p_value"] for c in per_cell
                  if sum(1 for o in per_cell if o["target"] == c["target"]) == 1}
    per_target = []
    for t, cc in by_target.items():
        row = {"target": t} | _hier(cc)
        if t in one_cell_p:  # a sign-flip over one cell can only give p = 1: test its pooled items instead
            row |= {"p_value": one_cell_p[t], "min_p": 0.0, "test": "mcnemar"}
        per_target.append(row)
    return {"a": a, "b": b, "overall": _hier(cells), "per_target": per_target, "cells": per_cell}


def arm_accuracy(records: Iterable[dict], items: Mapping[str, str], arm: str, target: str,
                 source: str | None = None) -> dict[str, Any] | None:
    """{"acc", "low", "high", "n", "runs"}: arm's mean accuracy on `target` (over its sources
    unless `source`, and over seeds). One run: its Wilson interval; several: the
    hierarchical bootstrap over sources, seeds and items of the accuracy (its
    difference from an all-wrong arm on the same items)."""
    recs = [r for r in records if r["arm"] == arm and r["target"] == target
            and (source is None or r.get("source") == source)]
    got = [(r, x) for r in recs if (x := _items(items, r)) is not None]
    if not got:
        return None
    if len(got) == 1:
        return accuracy(got[0][1]) | {"runs": 1}
    h = hierarchical_bootstrap({"target": target, "source": r.get("source") or NO_SOURCE, "seed": r["seed"],
                                "a": x, "b": np.zeros_like(x)} for r, x in got)
    return {"acc": round(h.diff, 4), "low": round(h.low, 4), "high": round(h.high, 4), "n": h.n_items,
            "runs": h.n_runs}


def mean_of(records: Iterable[dict], key: str, **where: Any) -> float | None:
    """The mean of a run field (e.g. the KD weight) over the runs matching `where`."""
    vals = [r[key] for r in records if r.get(key) is not None and all(r.get(k) == v for k, v in where.items())]
    return round(float(np.mean(vals)), 4) if vals else None


def summarize(runs: list[dict], items: Mapping[str, str], sources: Mapping[str, Iterable[str]],
              negative: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything the page shows about the study: each comparison, each arm's
    accuracy per target and per cell, and the mean KD weight of each cell.
    `negative` (target -> the source chosen in advance for its negative transfer
    under PoT) adds the primary comparison on those cells alone, a secondary
    fixed before the run (PANDA's claimed gain comes from repairing negative transfer)."""
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    comparisons = {name: got for name, a, b in COMPARISONS if (got := compare(runs, items, a, b)) is not None}
    if negative:
        kept = [r for r in runs if r.get("source") is None or negative.get(r["target"]) == r["source"]]
        got = compare(kept, items, PANDA, POT)
        if got is not None:
            comparisons[NEGATIVE] = got
    targets = {}
    for t, srcs in sources.items():
        per_arm = {arm: acc for arm in arms if (acc := arm_accuracy(runs, items, arm, t)) is not None}
        cells = {s: {"accuracy": {arm: acc for arm in arms
                                  if (acc := arm_accuracy(runs, items, arm, t, s)) is not None},
                     "kd_weight": mean_of(runs, "kd_weight", arm=PANDA, target=t, source=s),
                     "transferability": mean_of(runs, "transferability", arm=PANDA, target=t, source=s)}
                 for s in srcs}
        targets[t] = {"accuracy": per_arm, "cells": cells,
                      "majority": mean_of(runs, "test_acc", arm=MAJORITY, target=t)}
    return {"comparisons": comparisons, "targets": targets, "arms": arms}
