"""The study bundle shipped with the tool (`zoo/bundle.json`, written by
`zoo bundle`): loading it, and looking values up in it.

A bundled value applies only when the prompts in use are exactly the zoo
prompts it was computed from (their ids name their content): on a fresh
clone, where the zoo's prompts are the only ones, the pages show the bundled
matrices and layouts at once; as soon as the user has a prompt of their own
for a task (which always wins over the zoo's), the ids differ and the value
is computed here instead. Lookups never raise: no bundle, a malformed one, or
a key it does not hold all mean None (compute it).

- `matrix(metric, backbone, prompt_ids, options, prompt_type)`: an indicator
  table shaped like `similarity_table`'s, or None;
- `points(backbone, prompt_ids, layout, mode, seed, methods, prompt_type)`: a
  layout's points (the Clusters page's rows), or None;
- `validation()`: the bundled zero-shot matrix, indicator matrices and their
  correlations (and the report's, when it ran on the same prompts), or None.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

BUNDLED = "bundled"  # the origin of a value read from the bundle
COMPUTED = "computed"  # the origin of a value computed here

_LOCK = threading.Lock()
_CACHE: dict[str, tuple[tuple[int, int], dict | None]] = {}
_COLUMNS: dict[tuple, tuple[dict | None, dict | None]] = {}  # zero_shot_column's results


def bundle_path() -> Path:
    from ..zoo.files import BUNDLE, zoo_dir

    return zoo_dir() / BUNDLE


def load(path: Path | None = None) -> dict[str, Any] | None:
    """The bundle (read once per file version), or None when there is none or it is unreadable."""
    path = Path(path or bundle_path())
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        hit = _CACHE.get(str(path))
        if hit and hit[0] == stamp:
            return hit[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("prompt_ids"), list):
            raise ValueError("no prompt_ids")
    except (OSError, ValueError) as err:
        print(f"[panda] ignoring the study bundle {path}: {str(err)[:100]}", file=sys.stderr)
        data = None
    with _LOCK:
        _CACHE[str(path)] = (stamp, data)
    return data


def describe(bundle: dict[str, Any] | None = None) -> str:
    """One line naming where the bundled values come from."""
    b = bundle if bundle is not None else load()
    if not b:
        return "no study bundle"
    prov = b.get("provenance") or {}
    commit = (prov.get("commit") or "unknown commit")[:10]
    return f"computed from the zoo prompts by `zoo bundle` at {commit} on {str(prov.get('built', '?'))[:10]}"


def _index(b: dict[str, Any], backbone: str, prompt_type: str, prompt_ids: list[str]) -> list[int] | None:
    if b.get("backbone") != backbone or b.get("prompt_type", "input") != prompt_type or not prompt_ids:
        return None
    where = {pid: i for i, pid in enumerate(b["prompt_ids"])}
    if len(set(prompt_ids)) != len(prompt_ids) or any(pid not in where for pid in prompt_ids):
        return None
    return [where[pid] for pid in prompt_ids]


def matrix(metric: str, backbone: str, prompt_ids: list[str], options: dict[str, Any] | None = None,
           prompt_type: str = "input", bundle: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Indicator `metric`'s bundled table over `prompt_ids` (in that order), shaped
    like `similarity_table`'s plus "origin": "bundled" and "bundle" (its provenance
    line); None unless every prompt is one the bundle was computed from and the
    indicator's options are the ones it was computed with. A subset of the
    bundled prompts reads the sub-matrix only for a `pairwise` indicator."""
    from ..indicators import INDICATORS
    from ..indicators.similarity import effective_options

    b = bundle if bundle is not None else load()
    try:
        entry = (b or {}).get("indicators", {}).get(metric)
        idx = _index(b, backbone, prompt_type, list(prompt_ids)) if entry else None
        if idx is None:
            return None
        indicator = INDICATORS.get(metric)
        if effective_options(metric, options) != entry.get("options"):
            return None
        if len(idx) != len(b["prompt_ids"]) and not indicator.pairwise:
            return None
        M = entry["matrix"]
        return {"metric": indicator.name, "backbone": backbone, "prompt_type": prompt_type,
                "tasks": [b["tasks"][i] for i in idx], "families": [b["families"][i] for i in idx],
                "prompt_ids": list(prompt_ids), "prompt_origins": ["zoo"] * len(idx),
                "matrix": [[M[i][j] for j in idx] for i in idx], "origin": BUNDLED, "bundle": describe(b)}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    except Exception as err:  # noqa: BLE001 -- an unknown metric (PandaError) or anything else: compute it
        print(f"[panda] study bundle lookup failed: {str(err)[:100]}", file=sys.stderr)
        return None


def points(backbone: str, prompt_ids: list[str], layout: str, mode: str, seed: int,
           methods: tuple[str, ...] | list[str] = ("pt",), prompt_type: str = "input",
           bundle: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """A bundled layout's points (rows with the Clusters page's columns), or None.
    A layout depends on every point, so the prompts must be exactly the bundled set."""
    b = bundle if bundle is not None else load()
    try:
        if not b or _index(b, backbone, prompt_type, list(prompt_ids)) is None:
            return None
        if set(prompt_ids) != set(b["prompt_ids"]):
            return None
        for lay in b.get("layouts") or []:
            if (lay["layout"], lay["mode"], int(lay["seed"])) == (layout, mode, int(seed)) and \
                    sorted(lay["methods"]) == sorted(methods):
                return [dict(p) for p in lay["points"]]
    except (KeyError, TypeError, ValueError):
        return None
    return None


def validation(bundle: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The bundled evidence for the Metric-validation page: {"backbone", "prompt_type",
    "tasks", "families", "prompt_ids", "zero_shot" (acc, n, ci, relative, own, items),
    "indicators" ({metric: {"options", "matrix"}}), "correlations" ({metric: {measure:
    {...}}}), "study" (the report's runs and correlations, or None), "study_note",
    "bundle" (its provenance line)}; None when there is no bundle."""
    b = bundle if bundle is not None else load()
    if not b or "zero_shot" not in b:
        return None
    keys = ("backbone", "prompt_type", "tasks", "families", "prompt_ids", "zero_shot", "indicators", "correlations",
            "study", "study_note", "provenance")
    return {k: b.get(k) for k in keys} | {"bundle": describe(b)}


def validation_table(backbone: str, prompt_ids: list[str], metrics: list[str] | None = None,
                     prompt_type: str = "input", bundle: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The Metric-validation page's table from the bundle, shaped like
    `validation.validate_indicators`' output ("tasks", "measure", "measured",
    "indicators": {metric: {"matrix", correlations...}}, "best"), plus "origin":
    "bundled" and "bundle": each indicator's bundled matrix against the bundled
    zero-shot transfer, over exactly the zoo prompts in use (a subset takes the
    sub-matrices). None when the prompts are not the bundled ones, or when no
    selected indicator is bundled."""
    import numpy as np

    from ..indicators import rank_correlation

    b = bundle if bundle is not None else load()
    try:
        idx = _index(b, backbone, prompt_type, list(prompt_ids)) if b and "zero_shot" in b else None
        if idx is None or len(idx) < 3:
            return None
        zs = b["zero_shot"]
        sub = np.ix_(idx, idx)
        measured = np.array([[np.nan if x is None else x for x in row] for row in zs["relative"]], dtype=float)[sub]
        out: dict[str, Any] = {}
        for metric in metrics or list(b["indicators"]):
            entry = b["indicators"].get(metric)
            if entry is None:
                continue
            predicted = np.array(entry["matrix"], dtype=float)[sub]
            out[metric] = {"matrix": predicted.round(6).tolist()} | rank_correlation(predicted, measured)
        if not out:
            return None
        ranked = sorted(out, key=lambda m: -np.nan_to_num(out[m]["spearman_mean"], nan=-9))
        return {"tasks": [b["tasks"][i] for i in idx], "measure": zs["measure"], "backbone": backbone,
                "prompt_type": prompt_type, "config": {"test_limit": zs.get("test_limit")},
                "measured": [[None if not np.isfinite(x) else round(float(x), 4) for x in row] for row in measured],
                "missing_references": [], "indicators": out, "best": ranked[0], "origin": BUNDLED,
                "bundle": describe(b)}
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def zero_shot_column(backbone: str, prompt_ids: list[str], target_id: str, prompt_type: str = "input",
                     bundle: dict[str, Any] | None = None) -> dict[str, tuple[float, tuple[float, float] | None]] | None:
    """The bundled zero-shot transfer into one target, for the Transfer page's source
    ranking: {source prompt id: (accuracy relative to the target's own prompt, its 95%
    paired-bootstrap interval over the bundled test items)}, the same measure and
    interval a zero-shot run gives (`validation.pair_interval`). None unless every
    prompt is one the bundle was computed from. Cached per bundle version: the
    Transfer page asks on every rerun, and each column is a dozen bootstraps."""
    b = bundle if bundle is not None else load()
    key = (id(b), backbone, tuple(prompt_ids), target_id, prompt_type)
    with _LOCK:
        hit = _COLUMNS.get(key)
    if hit is not None and hit[0] is b:  # the cached column holds `b`, so its id is not reused
        return hit[1]
    column = _zero_shot_column(b, backbone, prompt_ids, target_id, prompt_type)
    with _LOCK:
        if len(_COLUMNS) > 256:
            _COLUMNS.clear()
        _COLUMNS[key] = (b, column)
    return column


def _zero_shot_column(b: dict[str, Any] | None, backbone: str, prompt_ids: list[str], target_id: str,
                      prompt_type: str) -> dict[str, tuple[float, tuple[float, float] | None]] | None:
    """`zero_shot_column` without its cache (each call runs the bootstraps)."""
    import numpy as np

    from ..stats.items import common_prefix, decode_items
    from ..stats.paired import paired_ratio_ci

    try:
        ids = list(dict.fromkeys([*prompt_ids, target_id]))
        idx = _index(b, backbone, prompt_type, ids) if b and "zero_shot" in b else None
        if idx is None:
            return None
        zs, t = b["zero_shot"], idx[ids.index(target_id)]
        items = zs.get("items")
        out: dict[str, tuple[float, tuple[float, float] | None]] = {}
        for pid, s in zip(ids, idx, strict=True):
            value = zs["relative"][s][t]
            if pid == target_id or value is None:
                continue
            ci = None
            if items and items[s][t] and items[t][t]:
                a, ref = common_prefix(decode_items(items[s][t]), decode_items(items[t][t]))
                low, high = paired_ratio_ci(a, ref) if a.size else (np.nan, np.nan)
                ci = (round(float(low), 4), round(float(high), 4)) if np.isfinite(low) and np.isfinite(high) else None
            out[pid] = (round(float(value), 4), ci)
        return out
    except (KeyError, IndexError, TypeError, ValueError):
        return None
