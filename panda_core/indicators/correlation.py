"""How well an indicator ranks sources, as PANDA evaluates its metric:
Spearman and Kendall rank correlation with measured transfer, each with a
bootstrap interval (a dozen source-target pairs leave a correlation very
uncertain), plus the retrieval view a user acts on: NDCG@3 of each target's
ranking and how often the top-ranked source beats the target's median source.
The statistics themselves live in `panda_core.stats`. `correlate` runs every
chosen indicator against one measured matrix: the one computation behind
validation against runs in the store and against external numbers."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def _nan_mean(values: list[float]) -> float:
    ok = [v for v in values if not np.isnan(v)]
    return float(np.mean(ok)) if ok else float("nan")


def rank_correlation(predicted: np.ndarray, measured: np.ndarray, exclude_diagonal: bool = True, *,
                     confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman and Kendall per target (column) over sources, their mean (with a
    bootstrap interval over targets), pooled over all source-target pairs (with a
    bootstrap interval over pairs and scipy's p-value), NDCG@3 and the top-beats-median rate.

    Both arrays are (sources, targets); NaN in `measured` marks a missing run."""
    from scipy.stats import kendalltau, spearmanr  # on use: the CLI imports this package to build its parser

    from ..stats import bootstrap_mean_ci, rank_correlation_ci, retrieval_summary, target_columns

    per_target = []
    pooled_p, pooled_m = [], []
    for _, p, m in target_columns(predicted, measured, exclude_diagonal):
        pooled_p.extend(p)
        pooled_m.extend(m)
        if len(p) >= 3 and np.ptp(p) > 0 and np.ptp(m) > 0:
            per_target.append((float(spearmanr(p, m)[0]), float(kendalltau(p, m)[0])))
        else:
            per_target.append((float("nan"), float("nan")))
    out: dict = {
        "spearman_per_target": [s for s, _ in per_target],
        "kendall_per_target": [k for _, k in per_target],
        "spearman_mean": _nan_mean([s for s, _ in per_target]),
        "kendall_mean": _nan_mean([k for _, k in per_target]),
    }
    opts = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    for name in ("spearman", "kendall"):
        pooled = rank_correlation_ci(pooled_p, pooled_m, name, **opts)
        out[f"{name}_pooled"] = pooled["rho"]
        out[f"{name}_pooled_ci"] = [pooled["low"], pooled["high"]]
        out[f"{name}_pooled_p"] = pooled["p_value"]
        out[f"{name}_mean_ci"] = list(bootstrap_mean_ci(out[f"{name}_per_target"], **opts))
    out["n_pairs"] = len(pooled_p)
    out["confidence"] = confidence
    return out | retrieval_summary(predicted, measured, k=3, exclude_diagonal=exclude_diagonal)


def default_metrics(backbone: str) -> list[str]:
    """Every registered indicator, less those that run the model when `backbone`
    is not installed (prompts imported for, say, roberta-base: only the
    embedding indicators can be computed; asking for the others by name is
    refused in one line by `similarity_table`)."""
    from ..backbones.foreign import installed
    from .base import INDICATORS

    if installed(backbone) or os.environ.get("PANDA_ALLOW_HUB"):
        return INDICATORS.names()
    return [n for n in INDICATORS.names() if not INDICATORS.get(n).needs_backbone]


def correlate(metrics: Sequence[str], backbone: str, tasks: list[str], prompt_length: int, measured: np.ndarray,
              n_inputs: int = 32, prompt_type: str = "input") -> tuple[dict[str, dict], str | None]:
    """({metric: {"matrix", correlations...}}, the best metric) of each indicator's
    matrix over `tasks` against a `measured` (sources, targets) matrix: Spearman and
    Kendall with bootstrap intervals, NDCG@3, top-beats-median (`rank_correlation`).
    The one computation behind validation against runs and against external numbers."""
    from .similarity import similarity_table

    out = {}
    for metric in metrics:
        table = similarity_table(metric, backbone, tasks, prompt_length, n_inputs=n_inputs, prompt_type=prompt_type)
        out[metric] = {"matrix": table["matrix"]} | rank_correlation(np.array(table["matrix"]), measured)
    ranked = sorted(out, key=lambda m: -np.nan_to_num(out[m]["spearman_mean"], nan=-9))
    return out, ranked[0] if ranked else None


def rounded(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in matrix]
