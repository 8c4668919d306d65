"""How well an indicator ranks sources: rank correlation with measured
transfer (with bootstrap intervals), and the retrieval view a user acts on.

A correlation over a dozen source-target pairs is itself noisy, so it comes
with an interval. But a user picks ONE source for a target: what matters is
whether the top of the ranking is good. NDCG@k scores the top k of one
target's ranking against the best achievable order, and "top beats median"
asks whether following the indicator's first choice beats picking a typical
source of that target.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .intervals import check_confidence

METHODS = ("spearman", "kendall")


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along `axis` (Pearson on mid-ranks), vectorised over resamples."""
    from scipy import stats  # on use (see the package docstring)
    rx, ry = (stats.rankdata(v, axis=axis) for v in (x, y))
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis) / np.sqrt((rx * rx).sum(axis) * (ry * ry).sum(axis))


def _kendall(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b along `axis` (as `scipy.stats.kendalltau`), vectorised over resamples."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    dx = np.sign(x[..., :, None] - x[..., None, :])
    dy = np.sign(y[..., :, None] - y[..., None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dx * dy).sum((-1, -2)) / np.sqrt((dx != 0).sum((-1, -2)) * (dy != 0).sum((-1, -2)))


def rank_correlation_ci(indicator: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray,
                        method: str = "spearman", *, confidence: float = 0.95, n_resamples: int = 2000,
                        seed: int = 0) -> dict[str, Any]:
    """{"rho", "low", "high", "p_value", "n"}: Spearman's rho or Kendall's tau-b of
    paired values (pairs with a NaN are dropped), its p-value from scipy, and a
    percentile bootstrap interval that resamples the (indicator, measured) PAIRS
    (here: source-target pairs, treated as exchangeable). Resamples whose values
    are all tied have no correlation and are left out of the interval. Fewer
    than 3 pairs, or a constant side, give NaN throughout."""
    from scipy import stats  # on use (see the package docstring)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_confidence(confidence)
    x, y = np.asarray(indicator, dtype=float).ravel(), np.asarray(measured, dtype=float).ravel()
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    nan = float("nan")
    out: dict[str, Any] = {"rho": nan, "low": nan, "high": nan, "p_value": nan, "n": int(x.size)}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    test = stats.spearmanr(x, y) if method == "spearman" else stats.kendalltau(x, y)
    out["rho"], out["p_value"] = float(test.statistic), float(test.pvalue)
    statistic = _spearman if method == "spearman" else _kendall
    batch = max(1, int(4e6 // (x.size * x.size))) if method == "kendall" else None  # bounds the pair matrices
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # resamples with all values tied give NaN; scipy warns, and they are dropped below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((x, y), statistic, paired=True, vectorized=True, n_resamples=n_resamples,
                              batch=batch, method="percentile", confidence_level=confidence,
                              rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    dist = dist[~np.isnan(dist)]
    alpha = 1.0 - confidence
    if dist.size:
        out["low"], out["high"] = (float(v) for v in np.quantile(dist, [alpha / 2, 1 - alpha / 2]))
    return out


def _clean(scores: Sequence[float] | np.ndarray, gains: Sequence[float] | np.ndarray) -> tuple[np.ndarray, ...]:
    """Sources with a measured gain; an unscored source ranks last."""
    s, g = np.asarray(scores, dtype=float), np.asarray(gains, dtype=float)
    keep = ~np.isnan(g)
    return np.nan_to_num(s[keep], nan=-np.inf), g[keep]


def ndcg_at_k(scores: Sequence[float] | np.ndarray, gains: Sequence[float] | np.ndarray, k: int = 3) -> float:
    """NDCG@k of one target's sources ranked by `scores` (higher = predicted
    better), judged by their measured `gains`.

    Gains are shifted so the target's worst source counts 0 (measured transfer
    can be negative, and NDCG needs gains >= 0). Sources tied in score share
    their positions' discounts (the mean over the tied orders, as scikit-learn
    does). NaN when fewer than 2 sources have a gain or all gains are equal."""
    s, g = _clean(scores, gains)
    if g.size < 2 or np.ptp(g) == 0:
        return float("nan")
    g = g - g.min()
    discount = 1.0 / np.log2(np.arange(g.size) + 2.0)
    discount[k:] = 0.0
    ideal = float(np.sort(g)[::-1] @ discount)
    dcg, pos = 0.0, 0
    for value in np.unique(s)[::-1]:  # tie groups, best first
        tied = s == value
        dcg += g[tied].mean() * discount[pos:pos + tied.sum()].sum()
        pos += int(tied.sum())
    return float(dcg / ideal)


def top_beats_median(scores: Sequence[float] | np.ndarray, gains: Sequence[float] | np.ndarray) -> bool | None:
    """Does the top-ranked source's gain exceed the median gain of the target's
    sources? (Tied top sources count by their mean gain.) None with fewer than 2 sources."""
    s, g = _clean(scores, gains)
    if g.size < 2:
        return None
    return bool(g[s == s.max()].mean() > np.median(g))


def target_columns(predicted: np.ndarray, measured: np.ndarray,
                   exclude_diagonal: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(target index, predicted, measured) over the sources with a measured value,
    per column of (sources, targets) matrices; a task as its own source is left out."""
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    for t in range(measured.shape[1]):
        keep = ~np.isnan(measured[:, t])
        if exclude_diagonal and t < measured.shape[0]:
            keep[t] = False
        yield t, predicted[keep, t], measured[keep, t]


def retrieval_summary(predicted: np.ndarray, measured: np.ndarray, k: int = 3,
                      exclude_diagonal: bool = True) -> dict[str, Any]:
    """Per target (column) and averaged over targets: NDCG@k and whether the top
    source beats the median source; targets where either is undefined are skipped in the mean."""
    ndcg, beats = [], []
    for _, p, m in target_columns(predicted, measured, exclude_diagonal):
        ndcg.append(ndcg_at_k(p, m, k))
        beats.append(top_beats_median(p, m))
    ok_ndcg = [v for v in ndcg if not np.isnan(v)]
    ok_beats = [v for v in beats if v is not None]
    return {
        f"ndcg_at_{k}": float(np.mean(ok_ndcg)) if ok_ndcg else float("nan"),
        f"ndcg_at_{k}_per_target": ndcg,
        "top_beats_median_rate": float(np.mean(ok_beats)) if ok_beats else float("nan"),
        "top_beats_median_per_target": beats,
        "n_targets_ranked": len(ok_beats),
    }
