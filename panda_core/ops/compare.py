"""The comparisons the app shows, computed by the library: each accuracy with
its 95% interval, differences between runs paired on the same test items
with a verdict (better / worse / within noise), and the indicator-validation
summary with the same verdict on its correlations.

Pure functions over run rows (the dicts `store.get_run` returns) and the
output of `validate_indicators`; no streamlit. They live here rather than in
the pages because which items two runs are compared on, which run is the
reference and when a difference counts as noise are the science: the pages
only format the numbers, and tests check them without a browser. What a
measurement still needs to be complete is in the sibling `measuring`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import store
from ..stats import accuracy_with_ci, common_prefix, paired_difference, result_items, wilson_interval

BETTER, WORSE, WITHIN_NOISE = "better", "worse", "within noise"
#: the method every other run of a target is compared against (prompt tuning from scratch)
REFERENCE = "pt"
#: comparisons beyond "against PT": (a, b) when both ran from the same source to the same target
VERSUS = (("panda", "pot"),)


def _number(x: Any) -> float | None:
    """A float, or None for a missing or NaN value (NaN means "not computed")."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def verdict(low: Any, high: Any) -> str | None:
    """What the interval [low, high] of a difference (or a correlation) says:
    BETTER when it lies above 0, WORSE when below, WITHIN_NOISE when it covers 0
    (the data cannot tell the sign), None when there is no interval."""
    low, high = _number(low), _number(high)
    if low is None or high is None:
        return None
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return WITHIN_NOISE


def _acc(acc: Any, low: Any = None, high: Any = None, n: Any = None) -> dict[str, Any]:
    return {"acc": _number(acc), "low": _number(low), "high": _number(high), "n": None if n is None else int(n)}


def accuracy_of(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """{"acc", "low", "high", "n", "majority"} of a run result's test accuracy.

    The interval is the stored `test_acc_ci`; for results stored without one it
    is the Wilson interval of the stored per-item correctness, or of `test_acc`
    over `n_test` items. With neither, the number of items is unknown and the
    interval stays None (shown as "—"): it is never guessed from a test limit."""
    res = result or {}
    acc, ci, n = res.get("test_acc"), res.get("test_acc_ci"), res.get("n_test")
    majority = _number(res.get("majority_test_acc"))
    if acc is None:
        return _acc(None) | {"majority": majority}
    items = result_items(res)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return _acc(acc, ci[0], ci[1], n if n is not None else (None if items is None else len(items))) \
            | {"majority": majority}
    if items is not None and len(items):
        n, k = len(items), int(items.sum())
    elif isinstance(n, int) and n > 0:
        k = round(float(acc) * n)
    else:
        return _acc(acc) | {"majority": majority}
    return _acc(acc, *wilson_interval(k, n), n) | {"majority": majority}


def dev_accuracy_of(run: Mapping[str, Any], dev_size: int | None) -> dict[str, Any]:
    """{"acc", "low", "high", "n"} of a run's best dev accuracy: the Wilson
    interval over the dev items scored (the first `dev_limit` of a dev split of
    `dev_size`). The best of several evaluations was chosen on these items, so
    the value and its interval lean optimistic; None where the size is unknown."""
    acc = (run.get("result") or {}).get("dev_acc")
    if acc is None:
        return _acc(None)
    cfg = run.get("config") or {}
    limit = (cfg.get("train") if isinstance(cfg.get("train"), dict) else cfg).get("dev_limit")
    sizes = [s for s in (limit, dev_size) if isinstance(s, int) and s > 0]
    if not dev_size or not sizes:
        return _acc(acc)
    n = min(sizes)
    return _acc(acc, *wilson_interval(round(float(acc) * n), n), n)


def prompt_accuracies(rows: Sequence[Mapping[str, Any]],
                      dev_sizes: Mapping[str, int | None] | None = None) -> list[dict[str, Any]]:
    """For each stored prompt row (as `store.list_prompts` gives it), its
    "test", "untrained" and "dev" accuracies, each {"acc", "low", "high", "n"}
    with its Wilson 95% interval: from the run that made the prompt (one
    indexed query for all rows) when there is one, else from
    the number of test items its scores record (`n_test`); without either, the
    value has no interval (an imported prompt states no item count)."""
    made_by = store.done_runs_of_prompts([r.get("id") for r in rows])
    out = []
    for row in rows:
        scores, run = row.get("scores") or {}, made_by.get(row.get("id"))
        test = accuracy_of(run["result"]) if run else accuracy_of(scores)
        n = test["n"]
        init = scores.get("init_test_acc")
        untrained = (_acc(init, *wilson_interval(round(float(init) * n), n), n) if init is not None and n
                     else _acc(init))
        if run:
            dev = dev_accuracy_of(run, (dev_sizes or {}).get(row.get("task")))
        else:
            dev = _acc(scores.get("dev_acc"))
        out.append({"test": test, "untrained": untrained, "dev": dev})
    return out


def _test_limit(run: Mapping[str, Any]) -> Any:
    cfg = run.get("config") or {}
    return (cfg.get("train") if isinstance(cfg.get("train"), dict) else cfg).get("test_limit")


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """a's test accuracy minus b's, paired on the test items both scored: the
    common prefix of their per-item correctness (a test limit takes the first
    items of the split). Returns {"a_acc", "b_acc" (each `_acc` on those items),
    "diff", "low", "high", "p_value" (exact McNemar), "n", "verdict", "paired"}.

    Runs stored without per-item results cannot be paired: then only the
    difference of the stored accuracies is given, and only when both scored
    the same test limit; no interval and no verdict ("paired": False)."""
    ia, ib = result_items(a.get("result")), result_items(b.get("result"))
    if ia is None or ib is None or not min(len(ia), len(ib)):
        ra, rb = accuracy_of(a.get("result")), accuracy_of(b.get("result"))
        same = _test_limit(a) == _test_limit(b) and None not in (ra["acc"], rb["acc"])
        return {"a_acc": ra, "b_acc": rb, "diff": ra["acc"] - rb["acc"] if same else None, "low": None,
                "high": None, "p_value": None, "n": None, "verdict": None, "paired": False}
    ia, ib = common_prefix(ia, ib)
    d = paired_difference(ia, ib, seed=seed)

    def on_items(items: Any) -> dict[str, Any]:
        got = accuracy_with_ci(items, digits=None)
        return _acc(got["acc"], *got["ci"], got["n"])

    return {"a_acc": on_items(ia), "b_acc": on_items(ib), "diff": d.diff, "low": d.low, "high": d.high,
            "p_value": d.p_value, "n": d.n, "verdict": verdict(d.low, d.high), "paired": True}


def run_name(run: Mapping[str, Any]) -> str:
    """How a comparison names a run: the method's label and its source; a
    training run is the target's stored PT prompt."""
    from ..transfer import METHODS

    if run.get("kind") == "train":
        return f"{METHODS.labels().get(run['method'], run['method'])} (stored prompt)"
    label = METHODS.labels().get(run["method"], run["method"])
    return f"{label} from {run['source']}" if run.get("source") else label


def reference_run_of_prompt(prompt_id: str | None) -> dict | None:
    """The finished training run that produced a stored prompt (its per-item
    results make it a paired reference), or None (an imported prompt has none)."""
    if not prompt_id:
        return None
    return store.done_runs_of_prompts([prompt_id], kind="train").get(prompt_id)


def _finished(run: Mapping[str, Any]) -> bool:
    return run.get("status") == "done" and (run.get("result") or {}).get("test_acc") is not None


def comparisons(runs: Sequence[Mapping[str, Any]], reference: Mapping[str, Any] | None = None, *,
                seed: int = 0) -> list[dict[str, Any]]:
    """Every comparison of a batch of runs, paired on the same test items
    (`compare_runs`): each finished run against the PT reference of its target
    (the batch's PT run of that target, else `reference`, e.g. the run that
    trained the target's stored PT prompt), then each pair of `VERSUS` (PANDA
    against PoT) from the same source. Each row adds "target", "a", "b" (names)
    and "a_run", "b_run" (ids)."""
    done = [r for r in runs if _finished(r)]
    out = []

    def row(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        return {"target": a["target"], "a": run_name(a), "b": run_name(b), "a_run": a["id"], "b_run": b["id"]} \
            | compare_runs(a, b, seed=seed)

    for target in dict.fromkeys(r["target"] for r in done):
        mine = [r for r in done if r["target"] == target]
        ref = next((r for r in mine if r["method"] == REFERENCE), None)
        if ref is None and reference is not None and reference.get("target") == target and _finished(reference):
            ref = reference
        if ref is not None:
            out += [row(r, ref) for r in mine if r["id"] != ref["id"] and r["method"] != REFERENCE]
        for a_method, b_method in VERSUS:
            for a in (r for r in mine if r["method"] == a_method):
                b = next((r for r in mine if r["method"] == b_method and r.get("source") == a.get("source")), None)
                if b is not None:
                    out.append(row(a, b))
    return out


# ------------------------------------------------------- indicator validation
CORRELATIONS = ("spearman", "kendall")


def _correlation(value: Any, ci: Any, p: Any = None) -> dict[str, Any]:
    low, high = (ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None))
    return {"value": _number(value), "low": _number(low), "high": _number(high), "p_value": _number(p),
            "verdict": verdict(low, high)}


def indicator_summary(validation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per indicator of `validate_indicators`' output, best first (by
    mean Spearman over targets, as it picks "best"; undefined last):
    "indicator", "<spearman|kendall>_<pooled|mean>" (each {"value", "low",
    "high", "p_value", "verdict"}: above 0, below 0 or within noise), "ndcg_at_3",
    "top_beats_median" ([targets where the top-ranked source beats the median
    source, targets ranked]), "n_pairs", and "verdict": the pooled Spearman's,
    the correlation with the most pairs behind its interval."""
    rows = []
    for name, v in validation["indicators"].items():
        row: dict[str, Any] = {"indicator": name}
        for c in CORRELATIONS:
            row[f"{c}_pooled"] = _correlation(v.get(f"{c}_pooled"), v.get(f"{c}_pooled_ci"), v.get(f"{c}_pooled_p"))
            row[f"{c}_mean"] = _correlation(v.get(f"{c}_mean"), v.get(f"{c}_mean_ci"))
        beats = [b for b in v.get("top_beats_median_per_target", []) if b is not None]
        row |= {"ndcg_at_3": _number(v.get("ndcg_at_3")), "top_beats_median": [sum(beats), len(beats)],
                "n_pairs": v.get("n_pairs"), "verdict": row["spearman_pooled"]["verdict"]}
        rows.append(row)
    return sorted(rows, key=lambda r: -(r["spearman_mean"]["value"] if r["spearman_mean"]["value"] is not None
                                        else -math.inf))
