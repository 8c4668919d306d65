"""Does an indicator predict real transfer? Measured transfer comes from the
runs in the store; each indicator is scored by rank correlation with it
(Spearman and Kendall, per target over sources, and pooled), as PANDA does.

Measures of transfer for a (source s, target t) pair:
- ``zero-shot``: relative performance acc(t | P_s) / acc(t | P_t) (Su et al.);
- ``pot-gain`` / ``panda-gain``: test accuracy of PoT / PANDA on t from s minus
  plain PT on t.
"""

from __future__ import annotations

import numpy as np

from . import store
from .errors import PandaError
from .metrics import Metric, rank_correlation

MEASURES = ("zero-shot", "pot-gain", "panda-gain")


def steps_to_reach(curve: list, threshold: float | None) -> int | None:
    """First evaluated step whose dev accuracy reaches `threshold` (how fast a
    transfer gets to what prompt tuning reached), or None."""
    if threshold is None:
        return None
    for step, acc in curve:
        if acc >= threshold - 5e-5:  # stored scores are rounded to 4 decimals
            return int(step)
    return None


def pt_scores(backbone: str) -> dict[str, float]:
    """Test accuracy of each task's newest PT prompt."""
    best: dict[str, tuple[float, float]] = {}
    for row in store.list_prompts(backbone=backbone, method="pt"):
        acc = row["scores"].get("test_acc")
        if acc is not None and (row["task"] not in best or row["created"] > best[row["task"]][0]):
            best[row["task"]] = (row["created"], acc)
    return {t: acc for t, (_, acc) in best.items()}


def transfer_results(backbone: str, method: str) -> dict[tuple[str, str], float]:
    """Newest test accuracy of each (source, target) transfer run of `method`."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for run in store.list_runs(kind="transfer", status="done", limit=100000):
        if run["backbone"] != backbone or run["method"] != method or not run["result"]:
            continue
        key = (run["source"], run["target"])
        if key not in out or run["updated"] > out[key][0]:
            out[key] = (run["updated"], run["result"]["test_acc"])
    return {k: v for k, (_, v) in out.items()}


def measured_matrix(backbone: str, tasks: list[str], measure: str = "zero-shot") -> np.ndarray:
    """(sources, targets) matrix of measured transfer; NaN where no run exists."""
    if measure not in MEASURES:
        raise PandaError(f"unknown measure '{measure}'; choose from {MEASURES}")
    pt = pt_scores(backbone)
    method = {"zero-shot": "zero-shot", "pot-gain": "pot", "panda-gain": "panda"}[measure]
    runs = transfer_results(backbone, method)
    M = np.full((len(tasks), len(tasks)), np.nan)
    for i, s in enumerate(tasks):
        for j, t in enumerate(tasks):
            if (s, t) not in runs or t not in pt:
                continue
            acc = runs[(s, t)]
            M[i, j] = acc / pt[t] if measure == "zero-shot" else acc - pt[t]
    return M


def validate_indicators(
    backbone: str, tasks: list[str] | None = None, measure: str = "zero-shot",
    metrics: list[str] | None = None, prompt_length: int = 20, n_inputs: int = 32,
) -> dict:
    """Rank correlation of every indicator with the measured transfer.

    Returns {"tasks", "measure", "measured", "indicators": {metric: {"matrix", correlations...}}, "best"}."""
    from .similarity import similarity_table, task_prompts

    prompts = task_prompts(backbone, tasks, prompt_length)
    tasks = [p.task for p in prompts]
    measured = measured_matrix(backbone, tasks, measure)
    off_diag = ~np.eye(len(tasks), dtype=bool)
    if np.isnan(measured[off_diag]).all():
        raise PandaError(
            f"no {measure} transfer runs among these tasks on '{backbone}' yet; run transfers first "
            "(Transfer page, `python -m panda_core sweep`, or `report`)"
        )
    out = {}
    for metric in metrics or [m.value for m in Metric]:
        table = similarity_table(metric, backbone, tasks, prompt_length, n_inputs=n_inputs)
        pred = np.array(table["matrix"])
        out[metric] = {"matrix": table["matrix"]} | rank_correlation(pred, measured)
    ranked = sorted(out, key=lambda m: -np.nan_to_num(out[m]["spearman_mean"], nan=-9))
    return {"tasks": tasks, "measure": measure, "backbone": backbone,
            "measured": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in measured],
            "indicators": out, "best": ranked[0] if ranked else None}
