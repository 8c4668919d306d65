"""Repeating a run over seeds and aggregating (`--seeds N`).

One seed's accuracy mixes the method with the luck of one initialisation and
one batch order. `over_seeds` runs seeds ``seed, seed+1, ...`` (each a full,
recorded, reusable run) and reports the mean with a t-interval over the
seeds, next to every seed's own result and interval. The items are the same
test items for every seed, so the per-seed `test_correct` strings also allow
paired comparisons seed by seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import PandaError

MAX_SEEDS = 100


def check_seeds(n: Any) -> int:
    """A seed count in [1, MAX_SEEDS], or a one-line refusal."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SEEDS:
        raise PandaError(f"--seeds must be an integer in [1, {MAX_SEEDS}], got {n!r}")
    return n


def seed_interval(values: list[float], confidence: float = 0.95) -> list[float]:
    """The Student-t interval of the mean of per-seed values (a point for one seed)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return [mean, mean]
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0:
        return [mean, mean]
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return [float(low), float(high)]


def aggregate(results: list[dict], seeds: list[int], digits: int = 4) -> dict:
    """The mean over seeds (`test_acc`, `test_acc_ci` over seeds) plus each seed's result under "runs"."""
    accs = [float(r["test_acc"]) for r in results]
    low, high = seed_interval(accs)
    out: dict[str, Any] = {
        "seeds": seeds, "test_acc": round(sum(accs) / len(accs), digits),
        "test_acc_ci": [round(low, digits), round(high, digits)], "ci_over": "seeds",
        "test_acc_per_seed": [round(a, digits) for a in accs], "runs": results,
    }
    for key in ("task", "target", "source", "method", "backbone", "majority_test_acc", "n_test"):
        values = {str(r.get(key)) for r in results}
        if key in results[0] and len(values) == 1:
            out[key] = results[0][key]
    return out


def over_seeds(run_one: Callable[[int], dict], seed: int, n: int) -> dict:
    """`run_one(seed)` for `n` consecutive seeds; one seed's result is returned as it is."""
    n = check_seeds(n)
    seeds = [seed + i for i in range(n)]
    results = [run_one(s) for s in seeds]
    return results[0] if n == 1 else aggregate(results, seeds)
