"""How well an indicator ranks sources, as PANDA evaluates its metric:
Spearman and Kendall rank correlation with measured transfer."""

from __future__ import annotations

import numpy as np


def rank_correlation(predicted: np.ndarray, measured: np.ndarray, exclude_diagonal: bool = True) -> dict:
    """Spearman and Kendall per target (column) over sources, their mean, and
    pooled over all pairs.

    Both arrays are (sources, targets); NaN in `measured` marks a missing run."""
    from scipy.stats import kendalltau, spearmanr

    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    per_target = []
    pooled_p, pooled_m = [], []
    for t in range(measured.shape[1]):
        keep = ~np.isnan(measured[:, t])
        if exclude_diagonal and t < measured.shape[0]:
            keep[t] = False
        p, m = predicted[keep, t], measured[keep, t]
        pooled_p.extend(p)
        pooled_m.extend(m)
        if len(p) >= 3 and np.ptp(p) > 0 and np.ptp(m) > 0:
            per_target.append((float(spearmanr(p, m)[0]), float(kendalltau(p, m)[0])))
        else:
            per_target.append((float("nan"), float("nan")))
    sp = [s for s, _ in per_target if not np.isnan(s)]
    kt = [k for _, k in per_target if not np.isnan(k)]
    pooled_ok = len(pooled_p) >= 3 and np.ptp(pooled_p) > 0 and np.ptp(pooled_m) > 0
    return {
        "spearman_per_target": [s for s, _ in per_target],
        "kendall_per_target": [k for _, k in per_target],
        "spearman_mean": float(np.mean(sp)) if sp else float("nan"),
        "kendall_mean": float(np.mean(kt)) if kt else float("nan"),
        "spearman_pooled": float(spearmanr(pooled_p, pooled_m)[0]) if pooled_ok else float("nan"),
        "kendall_pooled": float(kendalltau(pooled_p, pooled_m)[0]) if pooled_ok else float("nan"),
        "n_pairs": len(pooled_p),
    }
