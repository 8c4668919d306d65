"""Confidence intervals for accuracies.

An accuracy on a few hundred test items is uncertain by several points; a
table that prints 0.742 next to 0.735 invites a conclusion the data cannot
carry. Every accuracy the tool shows therefore carries a 95% Wilson score
interval: unlike the normal (Wald) interval it stays inside [0, 1] and keeps
close to its nominal coverage at accuracies near 0 or 1 and for small n,
which is where prompt tuning often sits (chance or ceiling). The Wilson
interval comes from `scipy.stats.binomtest(...).proportion_ci`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import PandaError
from .items import as_bool_array


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise PandaError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of `successes` out of `n`. With n = 0 nothing is
    known and the interval is the whole range (0, 1)."""
    from scipy import stats  # on use (see the package docstring)
    check_confidence(confidence)
    successes, n = int(successes), int(n)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise PandaError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_with_ci(correct: Sequence[bool] | np.ndarray | Any, confidence: float = 0.95,
                     digits: int | None = 4) -> dict:
    """{"acc", "ci": [low, high], "n"} of per-item correctness (bools, 0/1, or a
    tensor); rounded to `digits` for display and JSON (None keeps full precision)."""
    arr = as_bool_array(correct)
    n, k = int(arr.size), int(arr.sum())
    low, high = wilson_interval(k, n, confidence)
    acc = k / n if n else float("nan")

    def r(x: float) -> float:
        return x if digits is None else round(x, digits)

    return {"acc": r(acc), "ci": [r(low), r(high)], "n": n}


def majority_accuracy(labels: Iterable[Any]) -> float:
    """Accuracy of always predicting the most common label: the floor a trained
    classifier must clear before its accuracy means anything (NaN with no labels)."""
    counts = Counter(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    total = sum(counts.values())
    return max(counts.values()) / total if total else float("nan")


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of independent values (e.g. an
    accuracy over seeds, or a per-target correlation over targets), via
    `scipy.stats.bootstrap`. NaNs are dropped; fewer than two values give (nan, nan)."""
    from scipy import stats  # on use (see the package docstring)
    check_confidence(confidence)
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size < 2:
        return float("nan"), float("nan")
    if np.ptp(arr) == 0:  # every resample has the same mean
        return float(arr[0]), float(arr[0])
    res = stats.bootstrap((arr,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
