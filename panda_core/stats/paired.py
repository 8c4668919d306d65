"""Paired comparison of two methods on the SAME test items.

Two accuracies measured on the same items share most of their noise (the hard
items are hard for both), so comparing them as if independent wastes power
and comparing them on different items measures the items, not the methods.
`paired_difference` therefore works on the per-item correctness of both runs:

- the difference is mean(a) - mean(b) over the common items;
- its interval is a percentile bootstrap that resamples test ITEMS, keeping
  each item's pair (a_i, b_i) together (`scipy.stats.bootstrap` on the
  per-item differences a_i - b_i);
- its p-value is the exact McNemar test: under "no difference", an item on
  which the two disagree is equally likely to favour either, so the count of
  items only `a` got right among the discordant items is Binomial(n_disc, 1/2)
  (`scipy.stats.binomtest`, two-sided). With no discordant item, p = 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import PandaError
from .intervals import check_confidence
from .items import as_bool_array


class Difference:
    """What every estimated difference with an interval [low, high] offers (a
    dataclass mixin for `PairedDifference` and `HierarchicalDifference`)."""

    low: float
    high: float

    @property
    def within_noise(self) -> bool:
        """True when the interval covers 0: the data cannot tell the two apart."""
        return bool(self.low <= 0.0 <= self.high)

    def to_dict(self, digits: int | None = 4) -> dict[str, Any]:
        """JSON-ready, with `within_noise`; floats rounded to `digits` (None: full precision)."""
        out = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        if digits is not None:
            out = {k: round(v, digits) if isinstance(v, float) else v for k, v in out.items()}
        return out | {"within_noise": self.within_noise}


@dataclass(frozen=True)
class PairedDifference(Difference):
    """mean(a) - mean(b) on the same items, its bootstrap interval [low, high] at
    `confidence`, the exact McNemar p-value and the number of items."""

    diff: float
    low: float
    high: float
    p_value: float
    n: int
    confidence: float = 0.95


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired bool arrays (1.0 with no discordant pair)."""
    from scipy import stats  # on use (see the package docstring)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_ratio_ci(a_correct: Any, b_correct: Any, *, confidence: float = 0.95, n_resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) / mean(b) on the same items (each
    item's pair resampled together): the interval of a relative transfer, such
    as zero-shot accuracy over the target's own prompt's. (nan, nan) when b is
    never right."""
    from scipy import stats

    check_confidence(confidence)
    a, b = as_bool_array(a_correct).astype(float), as_bool_array(b_correct).astype(float)
    if a.size != b.size or a.size == 0:
        raise PandaError(f"a paired ratio needs the same, non-empty test items; got {a.size} and {b.size} items")
    if not b.any():
        return float("nan"), float("nan")

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return x.mean(axis) / y.mean(axis)

    if np.ptp(a) == 0 and np.ptp(b) == 0:
        r = float(ratio(a, b))
        return r, r
    res = stats.bootstrap((a, b), ratio, paired=True, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_difference(a_correct: Any, b_correct: Any, *, confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """Paired difference of accuracies of `a` and `b` on the same test items
    (per-item correctness: bools, 0/1 or tensors, in the same item order).

    Refuses arrays of different lengths: they are not the same items."""
    from scipy import stats  # on use (see the package docstring)
    check_confidence(confidence)
    a, b = as_bool_array(a_correct), as_bool_array(b_correct)
    if a.size != b.size:
        raise PandaError(f"a paired comparison needs the same test items; got {a.size} and {b.size} items")
    if a.size == 0:
        raise PandaError("a paired comparison needs at least one test item")
    d = a.astype(float) - b.astype(float)
    diff = float(d.mean())
    if np.ptp(d) == 0:  # every item differs the same way: every resample gives the same mean
        low = high = diff
    else:
        res = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                              method="percentile", vectorized=True, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return PairedDifference(diff, low, high, mcnemar_exact(a, b), int(a.size), confidence)
